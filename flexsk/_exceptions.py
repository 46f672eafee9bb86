"""Warnings of flexsk."""

__all__ = ["SelectionWarning"]


class SelectionWarning(UserWarning):
    """A fit whose selection means little: nothing improved, or training diverged.

    Raised as a warning (not an error), by the same rule for every strategy:

    * no candidate ranks above the pretrained net on validation data, and no
      proxy net does, so that the "selected" unit is arbitrary and the model
      is the pretrained one (the message says what each signal, accuracy and
      loss, did);
    * the returned model's validation loss is more than ten times the
      pretrained net's (a learning rate too large, typically);
    * the returned model validates at chance level or below;
    * some runs diverged (non-finite loss) and were left out of the
      selection, or the run that proxy nets are built from (fast's and
      faster's ft-all) diverged, so that the proxies mean nothing;
    * a refit diverged and the selection run's model was kept instead.

    Examples
    --------
    >>> import warnings
    >>> from flexsk import SelectionWarning
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", SelectionWarning)  # a meaningless pick raises
    """

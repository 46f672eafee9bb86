"""Warnings of flexsk."""

__all__ = ["SelectionWarning"]


class SelectionWarning(UserWarning):
    """A fit whose selection means little: nothing improved, or training diverged.

    Raised as a warning (not an error) when no training run improved on the
    pretrained weights and no proxy net did either, so that every candidate
    ties with the pretrained net and the "selected" unit is arbitrary; when
    some runs diverged (non-finite loss) and were left out of the selection;
    when fast's or faster's ft-all run diverged, so that the proxy nets built
    from it mean nothing; and when a refit diverged and the selection run's
    model was kept instead.

    Examples
    --------
    >>> import warnings
    >>> from flexsk import SelectionWarning
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", SelectionWarning)  # a meaningless pick raises
    """

"""flexsk's global settings, as scikit-learn's: ``get_config``, ``set_config``, ``config_context``.

They hold the choices that the measurements in the user guide made, for the
experiments that remake them: how a new head starts, how long a refit lasts,
how much memory a retrieval block may take. A fit reads them once, when it
starts, and carries them down to every training run, worker processes
included.
"""

import contextlib
import threading

from sklearn.utils._param_validation import StrOptions, validate_params

from ._checks import real

__all__ = ["get_config", "set_config", "config_context"]

_DEFAULTS = {
    # how a new head (head="new") starts in a run that tunes it with other weights, and
    # in a run that tunes it alone (the linear probe): see the user guide's new classes
    "head_start": "random",
    "head_alone_start": "probe",
    # the refit's length: the selection run's best number of epochs or of optimizer steps
    "refit_length": "epochs",
    # MiB of query-to-gallery scores that flexsk.metrics scores at once
    "working_memory": 256,
}
_CONSTRAINTS = {
    "head_start": [StrOptions({"random", "probe"}), None],
    "head_alone_start": [StrOptions({"random", "probe"}), None],
    "refit_length": [StrOptions({"epochs", "steps"}), None],
    "working_memory": [real(0, None, "neither"), None],
}
_local = threading.local()


def get_config():
    """The settings in force in this thread, as a dict (a copy).

    Returns
    -------
    dict
        ``head_start`` ("random" or "probe"), ``head_alone_start``,
        ``refit_length`` ("epochs" or "steps"), ``working_memory`` (MiB).

    Examples
    --------
    >>> import flexsk
    >>> flexsk.get_config()["refit_length"]
    'epochs'
    """
    return {**_DEFAULTS, **getattr(_local, "config", {})}


@validate_params(_CONSTRAINTS, prefer_skip_nested_validation=True)
def set_config(head_start=None, head_alone_start=None, refit_length=None,
               working_memory=None):
    """Change flexsk's settings in this thread; None leaves a setting as it is.

    Parameters
    ----------
    head_start : {"random", "probe"}, default=None
        How a new output layer (``head="new"``) starts in a run that tunes
        it with other weights: torch's initialization, seeded from
        ``random_state`` ("random", the default), or a logistic regression
        on the pretrained features of the run's training data ("probe").
    head_alone_start : {"probe", "random"}, default=None
        How it starts in a run that tunes it alone (the default: "probe").
    refit_length : {"epochs", "steps"}, default=None
        How long the refit trains: the selection run's best number of epochs
        (full passes over the larger data, the default) or of optimizer
        steps.
    working_memory : float, default=None
        MiB of query-to-gallery scores that :func:`flexsk.metrics.map_at_k`
        scores at once (256 by default).

    See Also
    --------
    config_context : The same, for the duration of a ``with`` block.

    Examples
    --------
    >>> import flexsk
    >>> flexsk.set_config(working_memory=64)
    >>> flexsk.get_config()["working_memory"]
    64
    >>> flexsk.set_config(working_memory=256)
    """
    changes = dict(head_start=head_start, head_alone_start=head_alone_start,
                   refit_length=refit_length, working_memory=working_memory)
    _local.config = {**getattr(_local, "config", {}),
                     **{key: value for key, value in changes.items() if value is not None}}


@contextlib.contextmanager
def config_context(**changes):
    """Change flexsk's settings for the duration of a ``with`` block.

    Parameters
    ----------
    **changes
        The settings of :func:`set_config`.

    Examples
    --------
    >>> import flexsk
    >>> with flexsk.config_context(refit_length="steps"):
    ...     flexsk.get_config()["refit_length"]
    'steps'
    >>> flexsk.get_config()["refit_length"]
    'epochs'
    """
    before = dict(getattr(_local, "config", {}))
    set_config(**changes)
    try:
        yield
    finally:
        _local.config = before

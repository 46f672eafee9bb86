"""What a strategy returns, and how the best of several models is chosen."""

from dataclasses import dataclass, field
from numbers import Real

import numpy as np

from .._ranking import ranked
from .._training import Evaluation, rank

__all__ = ["Outcome", "best_of"]


@dataclass
class Outcome:
    """What a strategy returns.

    Parameters
    ----------
    selected : str or tuple of str
        Key of the returned model in ``tuned``: a unit name, a tuple of unit
        names, ``"all"`` or ``"ss"``.
    tuned : dict
        Every model that could have been returned, by key (:class:`Tuned`).
    proxy_scores : dict
        Unit name -> selection score, in forward order ({} for baselines): an
        :class:`~flexsk._training.Evaluation` (proxies, flex's and halving's
        candidates) or a float (relative gradient norms).
    donor : str or None
        Key of the run whose weights the proxy nets took (fast, faster: ``"all"``),
        so that a diverged donor is reported; None when there is none.

    Examples
    --------
    >>> from flexsk.strategies import Outcome, best_of
    >>> def last_two(ctx):
    ...     tuned = ctx.tune_many([unit.name for unit in ctx.units[-2:]])
    ...     return Outcome(best_of({k: t.evaluation for k, t in tuned.items()}), tuned)
    """

    selected: object
    tuned: dict
    proxy_scores: dict = field(default_factory=dict)
    donor: object = None

    def __post_init__(self):
        if not _is_key(self.selected):
            raise TypeError(f"Outcome.selected must be a unit name, a tuple of unit names, "
                            f"'all' or 'ss'; got {type(self.selected).__name__} "
                            f"{self.selected!r}.")
        if not isinstance(self.tuned, dict) or not isinstance(self.proxy_scores, dict):
            raise TypeError("Outcome.tuned and Outcome.proxy_scores must be dicts keyed like "
                            "Outcome.selected.")
        wrong = {key: value for key, value in self.proxy_scores.items()
                 if isinstance(value, (bool, np.bool_))
                 or not isinstance(value, (Evaluation, Real))}
        if wrong:
            raise TypeError(f"Outcome.proxy_scores values must be Evaluations or numbers; got "
                            f"{wrong}.")

    @property
    def model(self):
        return self.tuned[self.selected]


def _is_key(key):
    return isinstance(key, str) or (isinstance(key, tuple) and bool(key)
                                    and all(isinstance(name, str) for name in key))


def best_of(evaluations):
    """The best key under the ranking rule (:mod:`flexsk._ranking`).

    Strategies list units in forward order and ``"all"`` last, so on a full
    tie the earliest unit wins and a single unit beats ``"all"``. Diverged
    runs (non-finite loss) never win unless nothing else is there. Plain
    numbers (relative gradient norms) rank by value, the earliest on ties.

    Parameters
    ----------
    evaluations : dict
        Key -> :class:`~flexsk.strategies.Evaluation`, or key -> float, in
        forward order.

    Returns
    -------
    key

    Examples
    --------
    >>> from flexsk.strategies import Evaluation, best_of
    >>> best_of({"conv1": Evaluation(0.8, 0.5), "fc1": Evaluation(0.8, 0.4)})
    'fc1'
    >>> best_of({"conv1": 0.2, "fc1": 0.2})
    'conv1'
    """
    if all(isinstance(v, (int, float)) for v in evaluations.values()):
        return ranked(evaluations)[0]
    return rank(evaluations)[0]

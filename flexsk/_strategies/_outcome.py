"""What a strategy returns, and how the best of several models is chosen."""

from dataclasses import dataclass, field

from .._training import rank

__all__ = ["Outcome", "best_of"]


@dataclass
class Outcome:
    """What a strategy returns.

    Attributes
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
    """

    selected: object
    tuned: dict
    proxy_scores: dict = field(default_factory=dict)

    @property
    def model(self):
        return self.tuned[self.selected]


def best_of(evaluations):
    """The best key: highest validation accuracy, then lowest loss, then earliest key.

    Strategies list units in forward order and ``"all"`` last, so on a full
    tie the earliest unit wins and a single unit beats ``"all"``. Diverged
    runs (non-finite loss) never win unless nothing else is there. Plain
    numbers (relative gradient norms) rank by value, the earliest on ties.
    """
    if all(isinstance(v, (int, float)) for v in evaluations.values()):
        keys = list(evaluations)
        return min(keys, key=lambda k: (-evaluations[k], keys.index(k)))
    return rank(evaluations)[0]

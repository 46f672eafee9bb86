from dataclasses import dataclass, field


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
        Unit name -> selection score, in forward order ({} for baselines).
    """

    selected: object
    tuned: dict
    proxy_scores: dict = field(default_factory=dict)

    @property
    def model(self):
        return self.tuned[self.selected]


def best_of(scores):
    """The key with the highest score; ties go to the earliest key.

    Strategies list units in forward order and ``"all"`` last, so the earliest
    unit wins a tie and a single unit beats ``"all"``.
    """
    best = None
    for key, score in scores.items():
        if best is None or score > scores[best]:
            best = key
    return best

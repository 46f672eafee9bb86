"""Selection strategies: short schedules over the training primitive.

Each strategy is a function ``strategy(ft, **options) -> Outcome`` where
``ft`` is a :class:`~flexsk._training.FineTuning`. The paper's Algorithms 1-3
are in :mod:`.exhaustive` and :mod:`.proxy`; its baselines in :mod:`.baselines`.
"""

from ._outcome import Outcome, best_of
from .baselines import ft_all, ft_fc, ft_ss
from .exhaustive import flex
from .proxy import fast, faster

#: Strategy name -> schedule.
STRATEGIES = {
    "flex": flex,
    "fast": fast,
    "faster": faster,
    "ft-all": ft_all,
    "ft-fc": ft_fc,
    "ft-ss": ft_ss,
}

__all__ = ["STRATEGIES", "Outcome", "best_of"]

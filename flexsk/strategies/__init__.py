"""Selection strategies: short schedules over the training primitive.

Each strategy is a function ``strategy(ft, **options) -> Outcome`` where
``ft`` is a :class:`~flexsk._training.FineTuning`. The paper's Algorithms 1-3
are in :mod:`.exhaustive` and :mod:`.proxy`; its baselines in :mod:`.baselines`.
Beyond the paper: relative gradient norms (:mod:`.gradient`), successive
halving (:mod:`.halving`) and greedy growth to several units
(:mod:`.combine`, applied to every strategy that ends on a single unit).
"""

from ._outcome import Outcome, best_of
from .baselines import ft_all, ft_fc, ft_ss
from .combine import add_units, single_unit
from .exhaustive import flex
from .gradient import rgn
from .halving import halving
from .proxy import fast, faster

#: Strategy name -> schedule. Those that end on a single unit take the
#: ``max_units`` and ``pair_margin`` options (:func:`.combine.single_unit`).
STRATEGIES = {
    "flex": single_unit(flex),
    "fast": single_unit(fast),
    "faster": single_unit(faster),
    "rgn": single_unit(rgn),
    "halving": single_unit(halving),
    "ft-all": ft_all,
    "ft-fc": ft_fc,
    "ft-ss": ft_ss,
}

__all__ = ["STRATEGIES", "Outcome", "best_of", "add_units"]

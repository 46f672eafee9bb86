"""Selection strategies: short schedules over the training primitive.

Each strategy is a :class:`Strategy` record whose schedule is a function
``schedule(ft, **options) -> Outcome``, ``ft`` being a
:class:`~flexsk._training.FineTuning`. The paper's Algorithms 1-3 are in
:mod:`.exhaustive` and :mod:`.proxy`; its baselines in :mod:`.baselines`.
Beyond the paper: relative gradient norms (:mod:`.gradient`), successive
halving (:mod:`.halving`) and greedy growth to several units (:mod:`.combine`,
applied to every strategy that ends on a single unit).
"""

from . import baselines, exhaustive, gradient, halving, proxy
from ._outcome import Outcome, best_of
from ._registry import Strategy
from .combine import add_units

#: The one registry: strategy name -> record.
STRATEGIES = {strategy.name: strategy for strategy in [
    Strategy("flex", exhaustive.flex, exhaustive.n_runs, single_unit=True),
    Strategy("fast", proxy.fast, proxy.n_runs, single_unit=True),
    Strategy("faster", proxy.faster, proxy.n_runs, single_unit=True),
    Strategy("rgn", gradient.rgn, gradient.n_runs, single_unit=True),
    Strategy("halving", halving.halving, halving.n_runs, single_unit=True,
             options=("halving_factor", "halving_min_epochs")),
    Strategy("ft-all", baselines.ft_all, baselines.one_run),
    Strategy("ft-fc", baselines.ft_fc, baselines.one_run, options=("n_fc_units",)),
    Strategy("ft-ss", baselines.ft_ss, baselines.one_run),
]}

__all__ = ["STRATEGIES", "Strategy", "Outcome", "best_of", "add_units"]

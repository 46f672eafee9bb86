"""Selection strategies: short schedules over the training primitive.

Each strategy is a :class:`Strategy` record whose schedule is a function
``schedule(ctx, **options) -> Outcome``, ``ctx`` being a
:class:`~flexsk._training.FineTuning`. The paper's Algorithms 1-3 are in
:mod:`.exhaustive` and :mod:`.proxy`; its baselines in :mod:`.baselines`.
Beyond the paper: a selector by relative gradient norms (:mod:`.gradient`),
successive halving (:mod:`.halving`), greedy growth to several units
(:mod:`.combine`, applied to every strategy that ends on a single unit), and
the recipes practitioners use, Auto-RGN, LP-FT and layer-wise lr decay
(:mod:`.recipes`).
"""

from types import SimpleNamespace

from . import baselines, exhaustive, gradient, halving, proxy, recipes
from ._option import Option
from ._outcome import Outcome, best_of
from ._registry import SINGLE_UNIT_OPTIONS, Strategy
from .combine import add_units

#: The one registry: strategy name -> record.
STRATEGIES = {strategy.name: strategy for strategy in [
    Strategy("flex", exhaustive.flex, exhaustive.n_runs, single_unit=True,
             options=(exhaustive.CANDIDATES,)),
    Strategy("fast", proxy.fast, proxy.n_runs, single_unit=True),
    Strategy("faster", proxy.faster, proxy.n_runs, single_unit=True),
    Strategy("rgn-unit", gradient.rgn_unit, gradient.n_runs, single_unit=True),
    Strategy("halving", halving.halving, halving.n_runs, single_unit=True,
             options=(halving.HALVING_FACTOR, halving.HALVING_MIN_EPOCHS)),
    Strategy("ft-all", baselines.ft_all, baselines.one_run),
    Strategy("ft-fc", baselines.ft_fc, baselines.one_run, options=(baselines.N_FC_UNITS,)),
    Strategy("ft-ss", baselines.ft_ss, baselines.one_run),
    Strategy("auto-rgn", recipes.auto_rgn, recipes.one_run),
    Strategy("lp-ft", recipes.lp_ft, recipes.two_runs),
    Strategy("llrd", recipes.llrd, recipes.one_run, options=(recipes.LAYER_DECAY,)),
]}
#: Former names: name -> (the strategy now, the version that removes the name).
RENAMED = {"rgn": ("rgn-unit", "0.6")}

#: Every built-in strategy's options, by name, in the registry's order: each is a
#: FlexTuner parameter, whose default, constraint and docstring entry come from here.
OPTIONS = {option.name: option for strategy in STRATEGIES.values()
           for option in list(strategy.options)
           + (list(SINGLE_UNIT_OPTIONS) if strategy.single_unit else [])}
#: Their defaults, by attribute: ``DEFAULTS.n_fc_units``.
DEFAULTS = SimpleNamespace(**{name: option.default for name, option in OPTIONS.items()})

__all__ = ["STRATEGIES", "RENAMED", "OPTIONS", "DEFAULTS", "Option", "Strategy", "Outcome",
           "best_of", "add_units"]

"""The strategy record: one per strategy, in one registry."""

from dataclasses import dataclass
from typing import Callable

from .._training import Tuned
from ._outcome import Outcome
from ._defaults import MAX_UNITS, PAIR_MARGIN
from .combine import add_units

__all__ = ["Strategy"]


@dataclass(frozen=True)
class Strategy:
    """A selection strategy: its schedule and what FlexTuner needs to know about it.

    Parameters
    ----------
    name : str
        The ``strategy`` parameter's value for a built-in; a label otherwise
        (progress bar, messages).
    schedule : callable
        ``schedule(ctx, **options) -> Outcome``: a short schedule over a
        :class:`~flexsk.strategies.TrainingContext`.
    n_runs : callable or None, default=None
        ``n_runs(n_units, **options) -> int``: the training runs it takes (an
        upper bound where the schedule can stop early), for progress bars;
        None when unknown.
    single_unit : bool
        Whether it ends on a single unit, so that ``max_units`` and
        ``pair_margin`` can grow its pick.
    options : tuple of str
        The FlexTuner parameters the schedule takes.

    Examples
    --------
    >>> from flexsk.strategies import Outcome, Strategy
    >>> def last_unit(ctx):
    ...     name = ctx.units[-1].name
    ...     return Outcome(name, {name: ctx.tune(name)})
    >>> Strategy("last-unit", last_unit, n_runs=lambda n_units: 1)
    Strategy('last-unit', last_unit)
    """

    name: str
    schedule: Callable
    n_runs: Callable = None
    single_unit: bool = False
    options: tuple = ()

    def __repr__(self):
        schedule = getattr(self.schedule, "__qualname__", repr(self.schedule))
        return (f"Strategy({self.name!r}, {schedule}"
                + (", single_unit=True" if self.single_unit else "") + ")")

    def __call__(self, ft, *, max_units=MAX_UNITS, pair_margin=PAIR_MARGIN,
                 **options):
        """Run the schedule with its own options; grow a single unit up to ``max_units``."""
        outcome = self.schedule(ft, **{k: options[k] for k in self.options if k in options})
        if not isinstance(outcome, Outcome):
            raise TypeError(f"The schedule of strategy {self.name!r} returned "
                            f"{type(outcome).__name__}; a schedule must return a "
                            f"flexsk.strategies.Outcome.")
        wrong = [key for key, tuned in outcome.tuned.items() if not isinstance(tuned, Tuned)]
        if wrong:
            raise TypeError(f"The schedule of strategy {self.name!r} returned Outcome.tuned "
                            f"values that are not Tuned (the result of ctx.tune) for "
                            f"{wrong}.")
        if outcome.selected not in outcome.tuned:
            raise ValueError(f"The schedule of strategy {self.name!r} selected "
                             f"{outcome.selected!r}, which is not among the models it returns "
                             f"in Outcome.tuned ({list(outcome.tuned)}).")
        if self.single_unit:
            outcome = add_units(ft, outcome, max_units=max_units, pair_margin=pair_margin)
        return outcome

    def total_runs(self, n_units, *, max_units=MAX_UNITS, **options):
        """Upper bound of the training runs, pairs of ``max_units`` included; None if
        unknown."""
        if self.n_runs is None:
            return None
        runs = self.n_runs(n_units, **{k: options[k] for k in self.options if k in options})
        if self.single_unit:
            runs += sum(max(n_units - k, 0) for k in range(1, max_units))
        return runs


Strategy.__module__ = "flexsk.strategies"  # documented, and named in errors, there

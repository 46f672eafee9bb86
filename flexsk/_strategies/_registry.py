"""The strategy record: one per strategy, in one registry."""

from dataclasses import dataclass
from typing import Callable

from .combine import add_units

__all__ = ["Strategy"]


@dataclass(frozen=True)
class Strategy:
    """A selection strategy: its schedule and what FlexTuner needs to know about it.

    Attributes
    ----------
    name : str
        The ``strategy`` parameter's value.
    schedule : callable
        ``schedule(ft, **options) -> Outcome``: a short schedule over the
        training primitive (:class:`~flexsk._training.FineTuning`).
    n_runs : callable
        ``n_runs(n_units, **options) -> int``: the training runs it takes (an
        upper bound where the schedule can stop early), for progress bars.
    single_unit : bool
        Whether it ends on a single unit, so that ``max_units`` and
        ``pair_margin`` can grow its pick.
    options : tuple of str
        The FlexTuner parameters the schedule takes.
    """

    name: str
    schedule: Callable
    n_runs: Callable
    single_unit: bool = False
    options: tuple = ()

    def __call__(self, ft, *, max_units=1, pair_margin=0.01, **options):
        """Run the schedule with its own options; grow a single unit up to ``max_units``."""
        outcome = self.schedule(ft, **{k: options[k] for k in self.options if k in options})
        if self.single_unit:
            outcome = add_units(ft, outcome, max_units=max_units, pair_margin=pair_margin)
        return outcome

    def total_runs(self, n_units, *, max_units=1, **options):
        """Upper bound of the training runs, pairs of ``max_units`` included."""
        runs = self.n_runs(n_units, **{k: options[k] for k in self.options if k in options})
        if self.single_unit:
            runs += sum(max(n_units - k, 0) for k in range(1, max_units))
        return runs

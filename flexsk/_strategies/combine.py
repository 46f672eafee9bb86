"""Tuning more than one unit: greedy growth of a single-unit selection.

The paper leaves combinations of units to future work (end of Section 5.2).
Here a strategy that ends on a single unit finds its unit as usual; then each
other unit is tried alongside it, the pair trained from the pretrained
weights, and the best pair is kept only if its validation accuracy is higher
by more than a margin. The same step repeats up to ``max_units`` units.
"""

from .._checks import count, real
from ._option import Option
from ._outcome import Outcome, best_of

__all__ = ["add_units", "MAX_UNITS", "PAIR_MARGIN"]

MAX_UNITS = Option("max_units", 1, (count(1),), "int",
                   "Most units the returned model tunes, for the strategies that end on a "
                   "single unit. See :ref:`several_units`.")
PAIR_MARGIN = Option("pair_margin", 0.01, (real(0, 1, "both"),), "float",
                     "Validation accuracy (or ``scoring``'s score) a larger selection must gain, "
                     "strictly, to be kept "
                     "with ``max_units > 1``.")


def add_units(ctx, outcome, *, max_units=MAX_UNITS.default, pair_margin=PAIR_MARGIN.default):
    """Greedily grow ``outcome``'s selected unit into a tuple of up to ``max_units`` units.

    Parameters
    ----------
    ctx : FineTuning
    outcome : Outcome
        A single-unit strategy's result. Returned unchanged when
        ``max_units`` is 1 or when ``"all"`` was selected.
    max_units : int, default=1
        Most units in the returned selection.
    pair_margin : float, default=0.01
        A larger selection is kept only when its validation accuracy exceeds
        the current one by *more than* this margin.

    Returns
    -------
    Outcome
        ``selected`` is a unit name, or a tuple of unit names in forward
        order; ``tuned`` also holds every combination tried (keyed by its
        tuple); ``proxy_scores`` are the single-unit strategy's.

    Notes
    -----
    Each step trains one candidate per remaining unit, all from the
    pretrained weights (:meth:`FineTuning.tune_many`, so ``n_jobs`` applies):
    ``L - 1`` more trainings for a pair. The best candidate has the highest
    validation accuracy, then the lowest loss, then the earliest added unit.
    """
    if max_units <= 1 or outcome.selected == "all":
        return outcome
    order = [unit.name for unit in ctx.units]
    current = outcome.selected if isinstance(outcome.selected, tuple) else (outcome.selected,)
    tuned = dict(outcome.tuned)
    score = tuned[outcome.selected].val_score
    selected = outcome.selected
    while len(current) < max_units:
        keys = [tuple(sorted(current + (name,), key=order.index))
                for name in order if name not in current]
        if not keys:
            break
        trained = ctx.tune_many(keys)
        tuned.update(trained)
        best = best_of({key: trained[key].evaluation for key in keys})
        if trained[best].diverged or not trained[best].val_score > score + pair_margin:
            break
        current, score, selected = best, trained[best].val_score, best
    return Outcome(selected, tuned, outcome.proxy_scores)

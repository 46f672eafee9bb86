"""Tuning more than one unit: greedy growth of a single-unit selection.

The paper leaves combinations of units to future work (end of Section 5.2).
Here a strategy that ends on a single unit finds its unit as usual; then each
other unit is tried alongside it, the pair trained from the pretrained
weights, and the best pair is kept only if it validates better by more than a
margin. The same step repeats up to ``max_units`` units.
"""

import functools

from ._outcome import Outcome, best_of


def add_units(ft, outcome, *, max_units=1, pair_margin=0.01):
    """Greedily grow ``outcome``'s selected unit into a tuple of up to ``max_units`` units.

    Parameters
    ----------
    ft : FineTuning
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
    ``L - 1`` more trainings for a pair. Ties between candidates go to the
    one whose added unit comes first in the forward pass.
    """
    if max_units <= 1 or outcome.selected == "all":
        return outcome
    order = [unit.name for unit in ft.units]
    current = outcome.selected if isinstance(outcome.selected, tuple) else (outcome.selected,)
    tuned = dict(outcome.tuned)
    score = tuned[outcome.selected].val_score
    selected = outcome.selected
    while len(current) < max_units:
        keys = [tuple(sorted(current + (name,), key=order.index))
                for name in order if name not in current]
        if not keys:
            break
        trained = ft.tune_many(keys)
        tuned.update(trained)
        best = best_of({key: trained[key].val_score for key in keys})
        if not trained[best].val_score > score + pair_margin:
            break
        current, score, selected = best, trained[best].val_score, best
    return Outcome(selected, tuned, outcome.proxy_scores)


def single_unit(schedule):
    """Give a single-unit strategy the ``max_units`` and ``pair_margin`` options.

    The wrapped schedule runs ``schedule`` and then :func:`add_units`; it is
    marked ``single_unit = True``.
    """
    @functools.wraps(schedule)
    def grown(ft, *, max_units=1, pair_margin=0.01, **options):
        return add_units(ft, schedule(ft, **options), max_units=max_units,
                         pair_margin=pair_margin)

    def n_runs(n_units, *, max_units=1, **options):
        extra = sum(max(n_units - k, 0) for k in range(1, max_units))
        return schedule.n_runs(n_units, **options) + extra

    grown.single_unit = True
    grown.n_runs = n_runs
    return grown

"""Budgeted exhaustive search: successive halving over flex's L + 1 candidates."""

import math

from .._training import Tuned
from ._outcome import Outcome


def halving(ft, *, halving_factor=3, halving_min_epochs=3, **options):
    """Successive halving over every unit and all units (flex's L + 1 candidates).

    Modelled on :class:`sklearn.model_selection.HalvingGridSearchCV`, with
    epochs as the resource. Rung 0 trains every candidate from the pretrained
    weights for ``halving_min_epochs`` epochs. Each later rung keeps the best
    ``ceil(n / halving_factor)`` candidates (at least one fewer) by validation
    accuracy and trains them on, from their best weights so far, up to
    ``halving_min_epochs * halving_factor ** rung`` epochs in total (capped at
    ``max_epochs``). When one candidate is left, it trains on with early
    stopping (``patience``) for the rest of ``max_epochs``.

    Ties go to the earliest unit, and a unit beats ``"all"``. Every rung runs
    with early stopping off and restores its best epoch, so a candidate's
    score is the best validation accuracy it has reached. Continuing a
    candidate restarts the optimizer's state and its shuffling sequence (the
    run's seed derives from the unit's name). Candidates train one at a time
    (``n_jobs`` does not apply).

    Cost: with ``n = L + 1`` candidates, factor ``f`` and ``r0`` minimum
    epochs, rung 0 trains ``n * r0`` candidate-epochs, and each of the about
    ``log_f(n) - 1`` later rungs about ``n * r0 * (f - 1) / f`` (rung ``i``'s
    ``ceil(n / f**i)`` candidates each train ``r0 * f**(i-1) * (f - 1)`` more
    epochs), plus the last candidate's early-stopped run; flex trains ``n``
    early-stopped runs. Epochs of different units cost different amounts:
    units late in the net train on cached activations and are cheap.
    """
    candidates = [unit.name for unit in ft.units] + ["all"]
    position = {key: i for i, key in enumerate(candidates)}
    max_epochs = ft.optimization.max_epochs
    tuned = {}
    alive, trained, rung = list(candidates), 0, 0
    ft.prefetch(candidates)  # every unit's cached input from one pretrained pass
    while len(alive) > 1:
        budget = min(max_epochs, math.ceil(halving_min_epochs * halving_factor ** rung))
        if budget > trained:
            for key in alive:
                tuned[key] = _train_on(ft, key, tuned.get(key), budget - trained, None)
            trained = budget
        ranked = sorted(alive, key=lambda key: (-tuned[key].val_score, position[key]))
        alive = ranked[:max(1, min(len(alive) - 1, math.ceil(len(alive) / halving_factor)))]
        rung += 1
    winner = alive[0]
    if max_epochs > trained:
        tuned[winner] = _train_on(ft, winner, tuned.get(winner), max_epochs - trained,
                                  "default")
    proxy_scores = {unit.name: tuned[unit.name].val_score for unit in ft.units}
    return Outcome(winner, tuned, proxy_scores)


def _train_on(ft, key, previous, epochs, patience):
    """Train ``key`` for ``epochs`` more epochs, from ``previous`` if given."""
    run = ft.tune(key, start=None if previous is None else previous.module,
                  max_epochs=epochs, patience=patience)
    if previous is None:
        return run
    best_epoch = previous.n_epochs + run.best_epoch if run.best_epoch else previous.best_epoch
    return Tuned(run.module, run.val_score, previous.n_epochs + run.n_epochs, best_epoch,
                 previous.val_history + run.val_history[1:])


def _n_runs(n_units, *, halving_factor=3, **options):
    n, runs = n_units + 1, 1  # the survivor's last run
    while n > 1:
        runs += n
        n = max(1, min(n - 1, math.ceil(n / halving_factor)))
    return runs


halving.n_runs = _n_runs  # training runs, for progress bars

"""Budgeted exhaustive search: successive halving over flex's L + 1 candidates."""

import math

from sklearn.utils._param_validation import StrOptions

from .._checks import count, real
from .._training import Tuned, rank
from ._option import Option
from ._outcome import Outcome

__all__ = ["halving", "n_runs", "HALVING_FACTOR", "HALVING_MIN_EPOCHS"]

HALVING_FACTOR = Option("halving_factor", 3, (real(1, None, "neither"),),
                        "float", '``"halving"``: the fraction of candidates each rung keeps, '
                        'and the growth of their epochs.')
HALVING_MIN_EPOCHS = Option("halving_min_epochs", "auto", (count(1), StrOptions({"auto"})),
                            'int or "auto"', '``"halving"``: epochs of the first rung. '
                            '``"auto"``: a run\'s ``patience`` (3 epochs without patience).')
#: Epochs of the first rung with ``halving_min_epochs="auto"`` and no patience.
FIRST_RUNG_EPOCHS = 3


def halving(ctx, *, halving_factor=HALVING_FACTOR.default,
            halving_min_epochs=HALVING_MIN_EPOCHS.default):
    """Successive halving over every unit and all units (flex's L + 1 candidates).

    Modelled on :class:`sklearn.model_selection.HalvingGridSearchCV`, with
    epochs as the resource. Rung 0 trains every candidate from the pretrained
    weights for ``halving_min_epochs`` epochs (``"auto"``: a run's patience,
    so that every candidate gets as long as a run that cannot make progress
    would; with a few images per class, that is at least 40 optimizer
    steps). Each later rung keeps the best ``ceil(n / halving_factor)``
    candidates (at least one fewer), ranked by validation accuracy, then
    loss, then forward order (a unit before ``"all"``), and trains them on,
    from their best weights so far, up to ``halving_min_epochs *
    halving_factor ** rung`` epochs in total (capped at the run's
    ``max_epochs``). When one candidate is left, it trains on with
    early stopping for the rest of ``max_epochs``.

    Every rung runs with early stopping off and restores its best epoch, so a
    candidate's score is the best it has reached. Continuing a candidate
    restarts the optimizer's state and its shuffling sequence (the run's seed
    derives from the unit's name). Candidates train one at a time (``n_jobs``
    does not apply). The user guide gives the cost.
    """
    candidates = [unit.name for unit in ctx.units] + ["all"]
    max_epochs = ctx.stopping.max_epochs
    if halving_min_epochs == "auto":
        halving_min_epochs = ctx.stopping.patience or FIRST_RUNG_EPOCHS
    tuned = {}
    alive, trained, rung = list(candidates), 0, 0
    ctx.prefetch(candidates)  # every unit's cached input from one pretrained pass
    while len(alive) > 1:
        budget = min(max_epochs, math.ceil(halving_min_epochs * halving_factor ** rung))
        if budget > trained:
            for key in alive:
                tuned[key] = _train_on(ctx, key, tuned.get(key),
                                       ctx.stopping.replace(max_epochs=budget - trained,
                                                            patience=None))
            trained = budget
        ranked = rank({key: tuned[key].evaluation for key in alive})
        alive = ranked[:max(1, min(len(alive) - 1, math.ceil(len(alive) / halving_factor)))]
        rung += 1
    winner = alive[0]
    if max_epochs > trained:
        tuned[winner] = _train_on(ctx, winner, tuned.get(winner),
                                  ctx.stopping.replace(max_epochs=max_epochs - trained))
    proxy_scores = {unit.name: tuned[unit.name].evaluation for unit in ctx.units}
    return Outcome(winner, tuned, proxy_scores)


def _train_on(ctx, key, previous, stopping):
    """Train ``key`` under ``stopping``, continuing from ``previous`` if given."""
    run = ctx.tune(key, start=None if previous is None else previous.module, stopping=stopping)
    if previous is None:
        return run
    if run.best_epoch:
        best_epoch, history = previous.n_epochs + run.best_epoch, run.history[1:]
    else:
        best_epoch, history = previous.best_epoch, run.history[1:]
    return Tuned(run.module, run.evaluation, previous.n_epochs + run.n_epochs, best_epoch,
                 previous.n_steps + run.n_steps, run.steps_per_epoch,
                 previous.history + history, previous.diverged or run.diverged,
                 previous.improved or run.improved, previous.from_pretrained, run.at_cap,
                 run.key, previous.training, run.n_trained, previous.seconds + run.seconds)


def n_runs(n_units, *, halving_factor=HALVING_FACTOR.default,
           halving_min_epochs=HALVING_MIN_EPOCHS.default):
    n, runs = n_units + 1, 1  # the survivor's last run
    while n > 1:
        runs += n
        n = max(1, min(n - 1, math.ceil(n / halving_factor)))
    return runs

"""Exhaustive selection: flex-tuning (Algorithm 1)."""

from ._outcome import Outcome, best_of


def flex(ft, **options):
    """Tune every unit on its own and all units together; keep the best on validation.

    Algorithm 1: for each unit l, fine-tune unit l until validation accuracy
    stops improving (lines 1-4); fine-tune all units likewise (lines 5-6);
    return the candidate with the best validation accuracy (line 7).
    """
    tuned = ft.tune_many([unit.name for unit in ft.units] + ["all"])  # independent runs
    scores = {key: candidate.val_score for key, candidate in tuned.items()}
    proxy_scores = {unit.name: scores[unit.name] for unit in ft.units}
    return Outcome(best_of(scores), tuned, proxy_scores)


flex.n_runs = lambda n_units, **options: n_units + 1  # training runs, for progress bars

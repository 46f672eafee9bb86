"""Exhaustive selection: flex-tuning (Algorithm 1)."""

from ._outcome import Outcome, best_of

__all__ = ["flex", "n_runs"]


def flex(ctx):
    """Tune every unit on its own and all units together; keep the best on validation.

    Algorithm 1: for each unit l, fine-tune unit l until validation stops
    improving (lines 1-4); fine-tune all units likewise (lines 5-6); return
    the candidate that validates best (line 7): highest accuracy, then lowest
    loss, then the earliest unit.
    """
    tuned = ctx.tune_many([unit.name for unit in ctx.units] + ["all"])  # independent runs
    evaluations = {key: candidate.evaluation for key, candidate in tuned.items()}
    proxy_scores = {unit.name: evaluations[unit.name] for unit in ctx.units}
    return Outcome(best_of(evaluations), tuned, proxy_scores)


def n_runs(n_units):
    return n_units + 1

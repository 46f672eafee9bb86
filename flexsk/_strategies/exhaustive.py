"""Exhaustive selection: flex-tuning (Algorithm 1), and the candidates it may add."""

from sklearn.utils._param_validation import InvalidParameterError

from ._option import Option
from ._outcome import Outcome, best_of
from .recipes import RECIPES, fine_tune_from_probe

__all__ = ["flex", "n_runs", "CANDIDATES"]

#: What flex may train besides each unit alone: every unit together, and the recipes.
_KINDS = ("units", "all") + tuple(RECIPES)

CANDIDATES = Option(
    "candidates", ("units", "all"), (tuple, list), "tuple of str",
    '``"flex"``: the candidates it trains and ranks: ``"units"`` (each unit alone), '
    '``"all"`` (ft-all) and recipes, ``"lp-ft"``, ``"llrd"``, ``"auto-rgn"``, one run '
    "each (see :ref:`recipes`).")


def flex(ctx, *, candidates=CANDIDATES.default):
    """Tune every unit on its own and all units together; keep the best on validation.

    Algorithm 1: for each unit l, fine-tune unit l until validation stops
    improving (lines 1-4); fine-tune all units likewise (lines 5-6); return
    the candidate that validates best (line 7): highest accuracy, then lowest
    loss, then the earliest unit. ``candidates`` may add recipes to the race
    (``"lp-ft"`` reuses the last unit's run as its linear probe).
    """
    unknown = [kind for kind in candidates if kind not in _KINDS]
    if unknown or not candidates:
        raise InvalidParameterError(
            f"The 'candidates' parameter of FlexTuner must be a non-empty tuple of "
            f"{', '.join(map(repr, _KINDS))}. Got {tuple(candidates)!r} instead.")
    keys = [unit.name for unit in ctx.units] if "units" in candidates else []
    tuned = ctx.tune_many(keys + (["all"] if "all" in candidates else []))  # independent runs
    for recipe in (kind for kind in RECIPES if kind in candidates):
        if recipe == "lp-ft":
            head = ctx.units[-1].name
            probe = tuned[head] if head in tuned else ctx.tune(head)
            tuned.update({head: probe, "lp-ft": fine_tune_from_probe(ctx, probe)})
        else:
            tuned.update(RECIPES[recipe](ctx).tuned)
    evaluations = {key: candidate.evaluation for key, candidate in tuned.items()}
    proxy_scores = {unit.name: evaluations[unit.name] for unit in ctx.units
                    if unit.name in evaluations}
    return Outcome(best_of(evaluations), tuned, proxy_scores)


def n_runs(n_units, *, candidates=CANDIDATES.default):
    return ((n_units if "units" in candidates else 0) + ("all" in candidates)
            + sum(2 if kind == "lp-ft" and "units" not in candidates else 1
                  for kind in candidates if kind in RECIPES))

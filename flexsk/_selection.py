"""What a fit does after its strategy: check the outcome, then refit the pick.

One rule for every strategy, built-in or a user's: the checks read the
training runs and the :class:`~flexsk._strategies.Outcome`, never a
strategy's name.
"""

import copy
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._exceptions import SelectionWarning
from ._text import key_name
from ._training import CrossValidation, Evaluation, FoldModules, Stopping, Tuned, rank

__all__ = ["Selection", "select", "check_outcome", "check_budget", "refit_pick", "LOSS_GROWTH",
           "REFIT_BUDGET", "REFIT_TOLERANCE", "refit_max_epochs"]

#: The returned model's validation loss may be at most this many times the pretrained
#: net's before a SelectionWarning says so. On the recorded trajectories of
#: benchmarks/selection_study.py, the kept epoch's loss is at most 1.014 times its
#: starting loss (the user guide quotes the figures).
LOSS_GROWTH = 10.0

#: A refit whose accuracy (or FlexTuner's ``scoring``) on the data it trained on
#: (training and validation data) is below the selection run's model's by more than
#: this failed: the selection run's model is returned instead. On
#: benchmarks/refit_check.py's fits, falling back then raised the test accuracy (the
#: user guide quotes the figures).
REFIT_TOLERANCE = 0.01

#: A refit counted in epochs trains at most this many times the ``max_epochs`` of a run
#: on its data (training and validation data together). It binds only with
#: ``max_epochs="auto"`` on a few samples: a selection run of one step an epoch may
#: last 400 epochs, which the refit's larger data make several times as many steps.
#: benchmarks/refit_length.py scored each refit at every length (144 fits at 2 per
#: class): capped at 2 times (200 epochs there), the refits trained 0.64 of their
#: epochs for 0.06 point less test accuracy; at 1 time, 0.39 for 0.32 point less (the
#: user guide quotes the figures).
REFIT_BUDGET = 2


def refit_max_epochs(all_data):
    """The most epochs a refit on ``all_data`` (its training context) trains."""
    return REFIT_BUDGET * all_data.stopping.max_epochs


@dataclass
class Selection:
    """What a fit's selection produced: the strategy's outcome and the returned model."""

    outcome: object
    model: object
    refit_epochs: object
    refit_time: float
    start: object  # the pretrained weights the returned model started from

    def attributes(self, keep_candidates):
        """FlexTuner's fitted attributes that describe the selection run, by name."""
        outcome = self.outcome
        tuned = outcome.tuned
        proxies = outcome.proxy_scores
        kept = tuned if keep_candidates else {outcome.selected: outcome.model}
        return dict(
            selected_unit_=outcome.selected,
            proxy_scores_={k: v.value if isinstance(v, Evaluation) else v
                           for k, v in proxies.items()},
            proxy_losses_={k: v.loss for k, v in proxies.items() if isinstance(v, Evaluation)},
            validation_scores_={k: t.val_score for k, t in tuned.items()},
            validation_losses_={k: t.val_loss for k, t in tuned.items()},
            n_epochs_={k: t.n_epochs for k, t in tuned.items()},
            max_epochs_reached_={k: t.at_cap for k, t in tuned.items()},
            best_epochs_={k: t.best_epoch for k, t in tuned.items()},
            refit_epochs_=self.refit_epochs, refit_time_=self.refit_time,
            # with cv, a candidate's models are one per fold: the first fold's stands for it
            candidates_={k: _first_fold(t.module) for k, t in kept.items()},
            selection_results_=selection_results(outcome))


def selection_results(outcome):
    """One row per candidate of the selection run, as a dict of equal-length arrays.

    Columns: ``candidate`` (its key as text), ``units`` (what it trained),
    ``n_trained_params``, ``score`` (what ranks: FlexTuner's ``scoring`` on
    validation data, or the validation accuracy without one; with ``cv``,
    the mean over folds) and ``score_std`` (0 without ``cv``), ``accuracy``,
    ``loss``, ``proxy_score`` and ``proxy_loss`` (NaN where there is none;
    a score-only proxy, such as a relative gradient norm, has no loss), ``n_epochs``,
    ``best_epoch``, ``n_steps``, ``max_epochs_reached``, ``fit_seconds``,
    ``rank`` (1: the best under the ranking rule) and ``picked``.
    """
    tuned, proxies = outcome.tuned, outcome.proxy_scores
    order = rank({key: t.evaluation for key, t in tuned.items()})
    position = {key: i + 1 for i, key in enumerate(order)}

    def proxy(key, what):
        value = proxies.get(key)
        if isinstance(value, Evaluation):
            return getattr(value, what)
        return float(value) if value is not None and what == "value" else math.nan

    columns = {
        "candidate": [key_name(key) for key in tuned],
        "units": [key_name(t.training.what if t.training is not None else key)
                  for key, t in tuned.items()],
        "n_trained_params": [t.n_trained for t in tuned.values()],
        "score": [t.evaluation.value for t in tuned.values()],
        "score_std": [float(np.std([e.value for e in t.folds])) if t.folds else 0.0
                      for t in tuned.values()],
        "accuracy": [t.evaluation.accuracy for t in tuned.values()],
        "loss": [t.evaluation.loss for t in tuned.values()],
        "proxy_score": [proxy(key, "value") for key in tuned],
        "proxy_loss": [proxy(key, "loss") for key in tuned],
        "n_epochs": [t.n_epochs for t in tuned.values()],
        "best_epoch": [t.best_epoch for t in tuned.values()],
        "n_steps": [t.n_steps for t in tuned.values()],
        "max_epochs_reached": [t.at_cap for t in tuned.values()],
        "fit_seconds": [t.seconds for t in tuned.values()],
        "rank": [position[key] for key in tuned],
        "picked": [key == outcome.selected for key in tuned],
    }
    return {name: np.asarray(values, dtype=object if name in ("candidate", "units") else None)
            for name, values in columns.items()}


def select(ctx, strategy, options, *, refit=True):
    """Run ``strategy`` on the training context, check its outcome, refit the pick."""
    outcome = strategy(ctx, **options)
    check_outcome(ctx, outcome)
    check_budget(ctx, outcome)
    model, refit_epochs, refit_time = outcome.model.module, None, 0.0  # cv implies refit
    start = ctx.pretrained
    if refit:
        started = time.perf_counter()
        model, refit_epochs = refit_pick(ctx, outcome)
        refit_time = time.perf_counter() - started
        all_data = getattr(ctx, "all_data", None)  # set when the refit starts elsewhere
        start = start if all_data is None else all_data.pretrained
    return Selection(outcome, model, refit_epochs, refit_time, start)


def _first_fold(module):
    """A model, or of a cross-validated candidate's models (one per fold) the first."""
    return module[0] if isinstance(module, FoldModules) else module


def _warn(message, category=SelectionWarning):
    # _warn, the check, select, FlexTuner._fit, fit, scikit-learn's fit wrapper: the caller
    warnings.warn(category(message), stacklevel=7)


def leaf_runs(ctx):
    """Every training run with its own history: a cross-validated fit's per-fold runs."""
    if isinstance(ctx, CrossValidation):
        return [run for fold in ctx.folds for run in fold.runs]
    return list(ctx.runs)


def check_outcome(ctx, outcome):
    """Raise when every run diverged; warn when the returned model means little.

    The warnings say what happened: runs that diverged, proxies built from a
    diverged donor, no candidate above the pretrained net (with what each
    validation signal did), a returned model whose validation loss is far
    above the pretrained net's, and a pick at chance level.
    """
    lr = ctx.optimization.lr
    runs = ctx.runs
    diverged = list(dict.fromkeys(key_name(key) for key, run in runs if run.diverged))
    if runs and all(run.diverged for _, run in runs):
        raise ValueError(
            f"Training diverged (non-finite loss) at lr={lr:g} in every run "
            f"({', '.join(diverged)}): nothing to select. Use a smaller lr.")
    if diverged:
        _warn(f"Training diverged (non-finite loss) at lr={lr:g} for {', '.join(diverged)}; "
              f"diverged runs are never selected. A smaller lr may help.")
        donor = outcome.donor
        if donor is not None and any(key == donor and run.diverged for key, run in runs):
            _warn(f"The {key_name(donor)!r} run that the proxy nets are built from diverged, "
                  f"so the proxy scores mean nothing and the unit "
                  f"{key_name(outcome.selected)!r} was picked blindly. Use a smaller lr, or "
                  f"strategy='flex'.")
    start = ctx.pretrained_evaluation
    proxies = [v for v in outcome.proxy_scores.values() if isinstance(v, Evaluation)]
    if not any(run.improved for _, run in runs) and not any(
            proxy.improves_on(start) for proxy in proxies):
        _warn(_nothing_improved(ctx, outcome, start, lr))
        return
    chosen = outcome.model.evaluation
    if chosen is None or not chosen.finite:
        return
    if start.finite and chosen.loss > LOSS_GROWTH * max(start.loss, 1e-12):
        _warn(f"The returned {key_name(outcome.selected)!r} has a validation loss of "
              f"{chosen.loss:.4g}, {chosen.loss / max(start.loss, 1e-12):.0f} times the "
              f"pretrained net's {start.loss:.4g} (accuracy {chosen.accuracy:.3f} against "
              f"{start.accuracy:.3f}): its predictions are confidently wrong where they are "
              f"wrong. lr={lr:g} is likely too large; try a smaller one.")
    chance = 1 / len(ctx.data.classes)
    if chosen.accuracy <= chance:
        _warn(f"The selected {key_name(outcome.selected)!r} validates at chance level "
              f"(accuracy {chosen.accuracy:.3f} with {len(ctx.data.classes)} classes): training "
              f"may need more epochs (a larger patience or max_epochs) or another lr.")


def check_budget(ctx, outcome):
    """A ConvergenceWarning when the pick's run was still improving at its max_epochs."""
    chosen = outcome.model
    if not chosen.at_cap:
        return
    capped = [key_name(key) for key, run in ctx.runs if run.at_cap]
    others = (f" ({len(capped)} of the {len(ctx.runs)} training runs ended so: "
              f"max_epochs_reached_ lists them)" if len(capped) > 1 else "")
    _warn(f"The selection run of {key_name(outcome.selected)!r} reached max_epochs "
          f"({chosen.n_epochs} epochs, {chosen.n_steps} optimizer steps) while still "
          f"improving: its best epoch was among its last ones{others}. A larger max_epochs "
          f"may give a better model.", ConvergenceWarning)


def _nothing_improved(ctx, outcome, start, lr):
    """The message when no candidate ranks above the pretrained net: which signal moved."""
    histories = [(key, [e for e in run.history[1:] if e is not None])
                 for key, run in leaf_runs(ctx) if run.history]
    seen = [(key, e) for key, history in histories for e in history]
    proxies = ", and no proxy net does" if outcome.proxy_scores else ""
    pretrained = ("the pretrained one, with the new head as it started"
                  if getattr(ctx, "head", None) else "the pretrained one")
    scored = "" if start.score is None else f"score {start.score:.3f}, "
    head = (f"No candidate ranks above the pretrained net on validation data ({scored}accuracy "
            f"{start.accuracy:.3f}, loss {start.loss:.4g}){proxies}: the selected "
            f"{key_name(outcome.selected)!r} means nothing and the model is {pretrained}.")
    if start.accuracy == 1.0 and start.score is None:
        return (f"{head} The pretrained net already classifies every validation sample "
                f"correctly: there is nothing left to select on these data.")
    finite = [(key, e) for key, e in seen if e.finite]
    if not finite:
        return f"{head} No run trained for a full epoch. Use a larger lr or more epochs."
    what = "accuracy" if start.score is None else "score"
    top_key, top = max(finite, key=lambda item: item[1].value)
    low_key, low = min(finite, key=lambda item: item[1].loss)
    accuracy = (f"the best {what} any run reached was {top.value:.3f} "
                f"({key_name(top_key)!r}), with a higher loss" if top.value > start.value
                else f"{what} never rose above {start.value:.3f}")
    fell = low.loss < start.loss * (1 - 1e-3)
    loss = (f"the validation loss fell from {start.loss:.4g} to {low.loss:.4g} "
            f"({key_name(low_key)!r})" if fell else
            f"the validation loss never fell below {start.loss:.4g}")
    grew = any(not e.finite or e.loss > LOSS_GROWTH * start.loss for _, e in seen)
    if grew:
        advice = f"Training made the validation loss grow: lr={lr:g} may be too large; try a " \
                 f"smaller one."
    elif fell:
        advice = ("Training was still lowering the loss when it stopped: a larger max_epochs "
                  "or patience, or a larger lr, may let the accuracy follow.")
    else:
        advice = f"Use a larger lr (now {lr:g}) or more epochs."
    joined = f"{loss}, but {accuracy}" if fell or top.value > start.value else \
        f"Neither signal moved: {loss}, and {accuracy}"
    return f"{head} {joined[0].upper()}{joined[1:]}. {advice}"


def refit_pick(ctx, outcome):
    """Retrain the pick from the pretrained weights on training and validation data.

    The pick trains again as its selection run trained (what, learning-rate
    factors; a run that continued another is retrained after it), for as long
    as its selection run took to reach its best epoch, counted in epochs (full
    passes over the larger data, at most REFIT_BUDGET times the ``max_epochs`` of
    a run on them) or, with the setting ``refit_length="steps"``
    (:func:`flexsk.config_context`), in optimizer steps; a pick that peaked
    at epoch 0 stays its start. A refit that scores below the selection run's
    model on the data it trained on (by more than REFIT_TOLERANCE) failed: the
    selection run's model is returned instead, with a warning. Returns the
    module and the epochs trained (None when the selection run's model is
    returned).
    """
    chosen = outcome.model
    if not _retrainable(chosen):
        _warn(f"The pick {key_name(outcome.selected)!r} continued from weights other than the "
              f"pretrained ones (start=); the refit retrains it from the pretrained weights "
              f"for the epochs its own run kept. Pass refit=False to keep the selection "
              f"run's model, or start it from the Tuned it continues (start=tuned).")
    all_data = ctx.on_all_data()
    if chosen.best_epoch == 0 and not chosen.from_pretrained and chosen.training is None:
        return copy.deepcopy(_first_fold(chosen.module)), 0  # its start weights
    run = _retrain(all_data, ctx.config["refit_length"], chosen, outcome.selected)
    if chosen.best_epoch == 0:
        return run.module, 0
    pick = _first_fold(chosen.module)
    if run.diverged:
        _warn(f"Refitting {key_name(outcome.selected)!r} on the training and validation data "
              f"diverged (non-finite loss); the model is the selection run's.")
        return pick, None
    samples = all_data.data.train  # the data the refit trained on
    refit, selected = all_data.evaluate(run.module, samples), all_data.evaluate(pick, samples)
    if refit.value < selected.value - REFIT_TOLERANCE:
        what = "scores" if refit.score is None else "has a score of"
        _warn(f"The refit of {key_name(outcome.selected)!r} {what} {refit.value:.3f} on the "
              f"training and validation data it trained on, below the selection run's model "
              f"({selected.value:.3f}), which trained on part of them: the refit failed, "
              f"and the model is the selection run's. A refit fails when lr "
              f"(now {ctx.optimization.lr:g}) is too large for its longer run, or when the "
              f"selection run's length does not suit the larger data; refit=False always "
              f"returns the selection run's model.")
        return pick, None
    return run.module, run.n_epochs


def _retrainable(tuned):
    """Whether a refit can train ``tuned`` again as it trained: from the pretrained
    weights, or after the run it continued."""
    if tuned.from_pretrained:
        return True
    start = tuned.training.start if tuned.training is not None else None
    return start is not None and _retrainable(start)


def _retrain(all_data, length, tuned, key):
    """``tuned`` trained again on ``all_data`` (its start first) for its selection run's
    peak, counted in epochs (at most REFIT_BUDGET times ``all_data``'s ``max_epochs``)
    or in optimizer steps (``length``); a :class:`Tuned`."""
    plan = tuned.training
    start = None
    if plan is not None and plan.start is not None:
        start = _retrain(all_data, length, plan.start, plan.start.key)
    what = key if plan is None else plan.what
    if tuned.best_epoch == 0:
        module = (start.module if start is not None
                  else copy.deepcopy(all_data.start_for(what)).eval())
        return Tuned(module, None, 0, 0, key=key, training=plan)
    if length == "steps":
        steps = tuned.best_epoch * tuned.steps_per_epoch
        stopping = Stopping(max_epochs=steps, max_steps=steps)
    else:
        stopping = Stopping(max_epochs=min(tuned.best_epoch, refit_max_epochs(all_data)))
    return all_data.tune(what, start=start, stopping=stopping, keep_best=False,
                         lr_scales=None if plan is None else plan.lr_scales, name=key)

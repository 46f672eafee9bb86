"""Cross-validated selection: every run trained on k folds, its evaluation the mean.

:class:`CrossValidation` offers the strategies the same operations as
:class:`~flexsk._training.FineTuning` (``tune``, ``tune_many``, ``prefetch``,
``evaluate``), so every schedule runs unchanged on folds: each training run
becomes one run per fold, and a candidate's evaluation is the mean of its
folds' validation accuracies and losses.
"""

import statistics

import numpy as np

from ._fine_tuning import Evaluation, FineTuning, Tuned

__all__ = ["CrossValidation", "FoldModules", "over_folds", "mean_evaluation"]


class FoldModules(list):
    """The modules of one candidate, one per fold (what a folded run's ``module`` holds)."""


def mean_evaluation(evaluations):
    """The mean accuracy and loss; a non-finite loss in any fold stays non-finite."""
    return Evaluation(float(np.mean([e.accuracy for e in evaluations])),
                      float(np.mean([e.loss for e in evaluations])))


def _combined(runs):
    """One :class:`Tuned` for the runs of a candidate on every fold."""
    best_epochs = [run.best_epoch for run in runs]
    return Tuned(
        module=FoldModules(run.module for run in runs),
        evaluation=mean_evaluation([run.evaluation for run in runs]),
        n_epochs=int(statistics.median_low([run.n_epochs for run in runs])),
        best_epoch=int(statistics.median_low(best_epochs)),
        n_steps=int(statistics.median_low([run.n_steps for run in runs])),
        steps_per_epoch=int(statistics.median_low([run.steps_per_epoch for run in runs])),
        history=[],
        diverged=any(run.diverged for run in runs),
        improved=any(run.improved for run in runs))


class CrossValidation:
    """The training primitive over folds: the interface of FineTuning for schedules.

    Parameters
    ----------
    folds : list of FineTuning
        One per fold, each with its own training and validation samples.
    all_data : FineTuning
        On every labelled sample, with no validation data: the refit.
    """

    def __init__(self, folds, all_data):
        self.folds = folds
        self.all_data = all_data
        first = folds[0]
        self.units = first.units
        self.by_name = first.by_name
        self.pretrained = first.pretrained
        self.optimization = first.optimization
        self.stopping = first.stopping
        self.data = first.data  # the classes; each fold holds its own samples
        self.runs = []

    def on_all_data(self):
        return self.all_data

    def selection(self, key):
        return self.folds[0].selection(key)

    def prefetch(self, keys):
        for fold in self.folds:
            fold.prefetch(keys)

    def tune(self, key, *, start=None, stopping=None, keep_best=True):
        starts = start if isinstance(start, FoldModules) else [start] * len(self.folds)
        runs = [fold.tune(key, start=s, stopping=stopping, keep_best=keep_best)
                for fold, s in zip(self.folds, starts)]
        return self._record(key, _combined(runs))

    def tune_many(self, keys):
        per_fold = [fold.tune_many(keys) for fold in self.folds]
        return {key: self._record(key, _combined([runs[key] for runs in per_fold]))
                for key in keys}

    def _record(self, key, tuned):
        self.runs.append((key, tuned))
        return tuned

    @property
    def pretrained_evaluation(self):
        return mean_evaluation([fold.pretrained_evaluation for fold in self.folds])


def over_folds(scoring):
    """Let ``scoring(ft, *modules) -> dict`` run on each fold and average the results.

    With a plain FineTuning it runs as it is; with a :class:`CrossValidation`,
    module arguments that hold one module per fold are split between the folds,
    and the folds' results are averaged key by key (evaluations by
    :func:`mean_evaluation`, numbers by their mean).
    """
    def scored(ft, *modules, **kwargs):
        if isinstance(ft, FineTuning) or not isinstance(ft, CrossValidation):
            return scoring(ft, *modules, **kwargs)
        results = []
        for i, fold in enumerate(ft.folds):
            fold_modules = [m[i] if isinstance(m, FoldModules) else m for m in modules]
            results.append(scoring(fold, *fold_modules, **kwargs))
        combined = {}
        for key in results[0]:
            values = [result[key] for result in results]
            combined[key] = (mean_evaluation(values) if isinstance(values[0], Evaluation)
                             else float(np.mean(values)))
        return combined

    scored.__doc__ = scoring.__doc__
    scored.__name__ = scoring.__name__
    scored.__wrapped__ = scoring
    return scored

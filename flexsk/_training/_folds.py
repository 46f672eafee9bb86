"""Cross-validated selection: every run trained on k folds, its evaluation the mean.

:class:`CrossValidation` is a training context
(:class:`~flexsk.strategies.TrainingContext`) like
:class:`~flexsk._training.FineTuning`, so every schedule runs unchanged on
folds: each training run becomes one run per fold, and a candidate's
evaluation (or a proxy's, or a gradient norm) is the mean over the folds.
"""

import statistics

import numpy as np
from sklearn.model_selection import check_cv

from ._data import seed_for
from ._fine_tuning import Evaluation, Training, Tuned

__all__ = ["CrossValidation", "FoldModules", "mean_evaluation", "make_folds"]


class FoldModules(list):
    """The modules of one candidate, one per fold (what a folded run's ``module`` holds)."""


def mean_evaluation(evaluations):
    """The mean accuracy, loss and score; a non-finite loss in any fold stays non-finite."""
    scores = [e.score for e in evaluations]
    return Evaluation(float(np.mean([e.accuracy for e in evaluations])),
                      float(np.mean([e.loss for e in evaluations])),
                      None if any(s is None for s in scores) else float(np.mean(scores)))


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
        improved=any(run.improved for run in runs),
        from_pretrained=all(run.from_pretrained for run in runs),
        at_cap=any(run.at_cap for run in runs),
        key=runs[0].key, training=runs[0].training, n_trained=runs[0].n_trained,
        seconds=sum(run.seconds for run in runs), folds=[run.evaluation for run in runs])


def make_folds(cv, labelled, class_labels):
    """The (train, validation) positions of each fold of ``cv`` over ``labelled``
    (stratified for an int, as :func:`~sklearn.model_selection.check_cv` does for
    classifiers); refuses a fold that validates on a class its training part lacks."""
    y = labelled.y.cpu().numpy()
    folds = list(check_cv(cv, y, classifier=True).split(np.zeros((len(y), 1)), y))
    for i, (fold_train, fold_val) in enumerate(folds):
        unseen = np.setdiff1d(y[fold_val], y[fold_train])
        if unseen.size:
            raise ValueError(
                f"Fold {i} of cv validates on classes {class_labels[unseen].tolist()} that "
                f"its training part lacks; use a stratified splitter (an int cv is "
                f"stratified).")
    return folds


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
        self.pretrained = first.pretrained
        self.head = first.head
        self.optimization = first.optimization
        self.config = first.config
        self.scoring = first.scoring
        self.stopping = first.stopping
        self.data = first.data  # the classes; each fold holds its own samples
        self.runs = []

    @classmethod
    def over(cls, folds, labelled, context, base_seed):
        """The cross-validated context of ``folds`` of ``labelled`` samples;
        ``context(train, val, seed)`` makes each fold's (and, with ``val=None``, the
        refit's) plain context."""
        return cls([context(labelled.subset(t), labelled.subset(v),
                            seed_for(base_seed, ("fold", i)))
                    for i, (t, v) in enumerate(folds)],
                   context(labelled, None, base_seed))

    def on_all_data(self):
        return self.all_data

    def prefetch(self, keys):
        for fold in self.folds:
            fold.prefetch(keys)

    def tune(self, key, *, start=None, stopping=None, keep_best=True, lr_scales=None,
             name=None):
        previous = start if isinstance(start, Tuned) else None
        modules = previous.module if previous is not None else start
        starts = modules if isinstance(modules, FoldModules) else [modules] * len(self.folds)
        runs = [fold.tune(key, start=s, stopping=stopping, keep_best=keep_best,
                          lr_scales=lr_scales, name=name)
                for fold, s in zip(self.folds, starts)]
        combined = _combined(runs)
        combined.training = Training(key, lr_scales, previous)
        return self._record(combined.key, combined)

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

    def evaluate(self, module):
        """The mean over folds of each fold's validation score of ``module`` (one
        module for every fold, or :class:`FoldModules`, one per fold)."""
        return self._mean("evaluate", module)

    def proxy_evaluations(self, donor):
        return self._mean("proxy_evaluations", donor)

    def relative_gradient_norms(self, n_batches=4):
        return self._mean("relative_gradient_norms", n_batches=n_batches)

    def _mean(self, method, *modules, **kwargs):
        """Run a scoring method on every fold (module arguments that hold one module
        per fold split between them); average evaluations by :func:`mean_evaluation`,
        numbers by their mean, key by key for dicts."""
        results = []
        for i, fold in enumerate(self.folds):
            fold_modules = [m[i] if isinstance(m, FoldModules) else m for m in modules]
            results.append(getattr(fold, method)(*fold_modules, **kwargs))

        def mean(values):
            return (mean_evaluation(values) if isinstance(values[0], Evaluation)
                    else float(np.mean(values)))

        if isinstance(results[0], dict):
            return {key: mean([result[key] for result in results]) for key in results[0]}
        return mean(results)

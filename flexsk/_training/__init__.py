"""The training core: one training primitive, one scoring primitive, and what they share.

* :mod:`._fine_tuning`: :class:`FineTuning` (``tune``, ``evaluate``, ``tune_many``),
  the ranking rule and the records of runs;
* :mod:`._cache`: :class:`ActivationCache`, frozen prefixes computed once;
* :mod:`._folds`: :class:`CrossValidation`, the same primitive over k folds;
* :mod:`._data`: the target data, stopping rules and optimizer settings.
"""

from ._cache import ActivationCache
from ._data import (AUTO_MAX_EPOCHS, AUTO_MAX_STEPS, AUTO_PATIENCE_EPOCHS, AUTO_PATIENCE_STEPS,
                    AUTO_VALIDATION_RATIO, DatasetSamples, Optimization, Samples,
                    SkorchClassifierLoss, Stopping, TargetData, batches, gather, run_in_batches,
                    samples_of, seed_for)
from ._fine_tuning import (LOSS_RTOL, EpochRecord, Evaluation, FineTuning, Patience, Training,
                           Tuned, rank)
from ._folds import CrossValidation, FoldModules, make_folds, mean_evaluation

__all__ = ["AUTO_MAX_EPOCHS", "AUTO_MAX_STEPS", "AUTO_PATIENCE_EPOCHS", "AUTO_PATIENCE_STEPS",
           "AUTO_VALIDATION_RATIO", "ActivationCache", "CrossValidation", "DatasetSamples",
           "EpochRecord", "Evaluation", "FineTuning", "FoldModules", "LOSS_RTOL", "Optimization",
           "Patience", "Samples", "SkorchClassifierLoss", "Stopping", "TargetData", "Training",
           "Tuned",
           "batches", "gather", "mean_evaluation", "make_folds", "rank", "run_in_batches",
           "samples_of", "seed_for"]

"""
=====================================================
Accuracy of tuning each unit (the paper's Figure 1)
=====================================================

``strategy="flex"`` (the paper's Algorithm 1) fine-tunes every unit on its
own, and all units together, and keeps the best on validation. With
``keep_candidates=True`` the tuner keeps every candidate, so
:class:`flexsk.plot.UnitScoresDisplay` can draw the validation accuracy of
each (solid) next to its test accuracy (dashed): which unit is worth tuning,
and how well validation accuracy finds it, for several sizes of the target
training set.
"""

# %%
# Blurred digits and the 7-unit CIFAR-like net
# --------------------------------------------
import pickle

import matplotlib.pyplot as plt
import numpy as np
import torch

from flexsk import FlexTuner
from flexsk.datasets import make_digits_shift, subsample_per_class
from flexsk.plot import UnitScoresDisplay
from flexsk.zoo import load_source_net

torch.set_num_threads(1)

net = load_source_net("conv7")
target = make_digits_shift("blur")
X, y, split = target.data, target.target, target.split
pool = np.flatnonzero(split == "train")
X_val, y_val = X[split == "val"], y[split == "val"]
X_test, y_test = X[split == "test"], y[split == "test"]

# %%
# One flex-tuner per training-set size
# ------------------------------------
# 2, 10 and 40 images per class: the subsets are nested (the 2-image set is
# inside the 10-image one).
ratios = [2, 10, 40]
tuners = {}
for ratio in ratios:
    train = pool[subsample_per_class(y[pool], ratio, random_state=0)]
    tuners[ratio] = FlexTuner(
        net,
        strategy="flex",
        keep_candidates=True,
        max_epochs=30,
        patience=3,
        random_state=0,
    )
    tuners[ratio].fit(X[train], y[train], X_val=X_val, y_val=y_val)
    print(
        f"{ratio:>2} per class: flex picked {tuners[ratio].selected_unit_!r} "
        f"in {tuners[ratio].fit_time_:.1f} s"
    )

# %%
# One tuner
# ---------
# Validation (solid) and test (dashed) accuracy of every candidate of the
# 10-image tuner; the triangle marks the candidate flex selected. These are
# the models of the selection run: the tuner then returns its pick trained
# once more on the training and validation images together (``refit``).
# :meth:`~flexsk.plot.UnitScoresDisplay.from_estimator` computes the scores,
# draws them and keeps both: the values in ``display.validation_scores`` and
# ``display.test_scores``, the Axes in ``display.ax_``.
fig, ax = plt.subplots(figsize=(6.5, 3.5))
display = UnitScoresDisplay.from_estimator(tuners[10], X_test, y_test, ax=ax)
display.ax_.set_title("conv7, blurred digits, 10 images per class")
fig.tight_layout()

# %%
# All training-set sizes, as in the paper
# ---------------------------------------
# :meth:`~flexsk.plot.UnitScoresDisplay.from_results` reads a *results
# table*: one dict per fit, as ``flexsk bench`` writes them (see
# :func:`flexsk.bench.read_results`). Built from the three tuners, it draws
# the paper's Figure 1: one colour per training-set size, and a triangle on
# the unit flex picked.
rows = [
    dict(
        net="conv7",
        shift="blur",
        ratio=ratio,
        strategy="flex",
        units=tuner.units_,
        selected_unit=tuner.selected_unit_,
        validation_scores=tuner.validation_scores_,
        candidate_test_scores=tuner.score_candidates(X_test, y_test),
    )
    for ratio, tuner in tuners.items()
]
fig, ax = plt.subplots(figsize=(6.5, 3.8))
display = UnitScoresDisplay.from_results(rows, ax=ax)
display.ax_.set_title("conv7, blurred digits: accuracy after tuning each unit")
fig.tight_layout()

# %%
# The numbers behind the plot (validation / test accuracy of each candidate):
for row in rows:
    print(
        f"{row['ratio']:>2}/class  "
        + "  ".join(
            f"{unit} {val:.2f}/{row['candidate_test_scores'][unit]:.2f}"
            for unit, val in row["validation_scores"].items()
        )
    )

# %%
# ``n_epochs_`` shows how long each candidate trained before early stopping,
# and ``best_epochs_`` the epoch whose weights it kept; the paper's cost
# analysis calls the former :math:`E_{one}` and :math:`E_{all}`.
print({unit: epochs for unit, epochs in tuners[10].n_epochs_.items()})
print({unit: epoch for unit, epoch in tuners[10].best_epochs_.items()})

# %%
# The fitted tuners pickle like any scikit-learn estimator: keep them, or send
# them to another process.
restored = pickle.loads(pickle.dumps(tuners))
print({key: type(value).__name__ for key, value in restored.items()})

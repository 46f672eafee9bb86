"""
================================
Grid search over the strategies
================================

``strategy`` is a hyper-parameter like any other, so
:class:`~sklearn.model_selection.GridSearchCV` can choose between flex-tuning
and the classic fine-tuning baselines by cross-validation, and its
``cv_results_`` show what each choice costs and buys.
"""

# %%
# Data: the 4-unit MNIST-like net and rotated digits
# --------------------------------------------------
import pickle

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from flexsk import FlexTuner
from flexsk.datasets import make_digits_shift
from flexsk.zoo import load_source_net

torch.set_num_threads(1)

net = load_source_net("conv4")  # units conv1, conv2, fc1, fc2
# the training pool: 40 images per class
X, y = make_digits_shift("rotation", split="train", return_X_y=True)
X_test, y_test = make_digits_shift("rotation", split="test", return_X_y=True)

# %%
# The search
# ----------
# A list of grids: ``n_fc_units`` only matters for ``"ft-fc"`` (the paper's
# ft-fc (1) and ft-fc (2)). Each fit holds out 20% of its training fold
# (``validation_fraction``) for early stopping and for the unit selection,
# then refits its pick on the whole training fold; the held-out
# cross-validation fold scores it.
tuner = FlexTuner(net, max_epochs=30, patience=3, random_state=0)
param_grid = [
    {"strategy": ["flex", "fast", "faster", "ft-ss", "ft-all"]},
    {"strategy": ["ft-fc"], "n_fc_units": [1, 2]},
]
search = GridSearchCV(
    tuner, param_grid, cv=StratifiedKFold(3, shuffle=True, random_state=0)
)
search.fit(X, y)
print(f"best: {search.best_params_}, CV accuracy {search.best_score_:.3f}")
best = search.best_estimator_
print(f"refitted on all {len(X)} images, it tuned {best.selected_unit_!r}")
print(f"test accuracy {search.score(X_test, y_test):.3f}")

# %%
# The ``cv_results_``
# -------------------
# Mean cross-validated accuracy (with its standard deviation over the
# folds) against the mean fit time of each candidate.
results = search.cv_results_
labels = [
    p["strategy"] + (f" ({p['n_fc_units']})" if "n_fc_units" in p else "")
    for p in results["params"]
]
order = np.argsort(results["mean_fit_time"])
fig, ax = plt.subplots(figsize=(6.5, 4))
ax.errorbar(
    results["mean_fit_time"],
    results["mean_test_score"],
    xerr=results["std_fit_time"],
    yerr=results["std_test_score"],
    fmt="o",
    color="tab:blue",
    ecolor="tab:gray",
    capsize=3,
)
for i in order:
    ax.annotate(
        labels[i],
        (results["mean_fit_time"][i], results["mean_test_score"][i]),
        textcoords="offset points",
        xytext=(6, 4),
        fontsize="small",
    )
best = search.best_index_
ax.plot(
    results["mean_fit_time"][best],
    results["mean_test_score"][best],
    "*",
    color="tab:red",
    markersize=16,
    label="best_params_",
)
ax.set(
    xlabel="mean fit time (s)",
    ylabel="mean CV accuracy",
    title="GridSearchCV(FlexTuner): accuracy against cost",
)
ax.set_xscale("log")
ax.grid(alpha=0.3)
ax.legend(loc="lower right")
fig.tight_layout()

# %%
# The same numbers as a table:
for i in np.argsort(-results["mean_test_score"]):
    print(
        f"{labels[i]:<10} "
        f"accuracy {results['mean_test_score'][i]:.3f} "
        f"+/- {results['std_test_score'][i]:.3f}  "
        f"fit {results['mean_fit_time'][i]:5.2f} s  "
        f"rank {results['rank_test_score'][i]}"
    )

# %%
# The fitted search, and the tuner it holds, pickle like any scikit-learn
# estimator: keep it, or send it to another process.
restored = pickle.loads(pickle.dumps(search))
print(restored.best_params_, restored.best_estimator_.__class__.__name__)

"""
====================================
FlexTuner in a Pipeline
====================================

:class:`~flexsk.FlexTuner` is a scikit-learn estimator, so it composes with
preprocessing steps in a :class:`~sklearn.pipeline.Pipeline`, and the
pipeline's parameters, including the tuner's, can be searched. Here the
target digits carry heavy pixel noise, and a median filter cleans them up
before they reach the pretrained network.
"""

# %%
# Noisy digits and a denoising step
# ---------------------------------
import pickle

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy import ndimage
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from flexsk import FlexTuner
from flexsk.datasets import make_digits_shift, subsample_per_class
from flexsk.zoo import load_source_net

torch.set_num_threads(1)

net = load_source_net("conv4")
X_pool, y_pool = make_digits_shift("noise", split="train", return_X_y=True)
keep = subsample_per_class(y_pool, 20, random_state=0)  # 20 images per class
X, y = X_pool[keep], y_pool[keep]
X_test, y_test = make_digits_shift("noise", split="test", return_X_y=True)


def median_filter(X, size=3):
    """Median-filter each image of a batch (n_samples, channels, H, W)."""
    return ndimage.median_filter(X, size=(1, 1, size, size)).astype(np.float32)


denoise = FunctionTransformer(median_filter, kw_args={"size": 3})

fig, axes = plt.subplots(2, 6, figsize=(7, 2.6))
for i in range(6):
    axes[0, i].imshow(X_test[i, 0], cmap="gray", vmin=0, vmax=1)
    axes[1, i].imshow(
        median_filter(X_test[i:i + 1])[0, 0], cmap="gray", vmin=0, vmax=1
    )
for ax in axes.flat:
    ax.set_axis_off()
axes[0, 0].set_title("noisy target", loc="left", fontsize="small")
axes[1, 0].set_title("median filter, size 3", loc="left", fontsize="small")
fig.tight_layout()

# %%
# The pipeline
# ------------
# Here the tuner holds out its own validation set (``validation_fraction``,
# stratified) from the images it receives, which the filter has already
# cleaned. A fixed ``X_val`` passed as a fit parameter would skip the
# filter; metadata routing sends it through the pipeline's steps (see
# :ref:`sphx_glr_auto_examples_plot_pipeline_validation.py`).
pipe = Pipeline(
    [
        ("denoise", denoise),
        (
            "tuner",
            FlexTuner(
                net, strategy="fast", max_epochs=30, patience=3, random_state=0
            ),
        ),
    ]
)
pipe.fit(X, y)
print(
    f"selected unit: {pipe['tuner'].selected_unit_!r}; "
    f"test accuracy {pipe.score(X_test, y_test):.3f}"
)

# %%
# Searching the preprocessing and the strategy together
# -----------------------------------------------------
# Step parameters are addressed as ``<step>__<parameter>``. ``"passthrough"``
# removes the denoising step; ``kw_args`` sets the filter size.
grid = [
    {
        "denoise": ["passthrough"],
        "tuner__strategy": ["fast", "ft-fc", "ft-all"],
    },
    {
        "denoise": [denoise],
        "denoise__kw_args": [{"size": 2}, {"size": 3}],
        "tuner__strategy": ["fast", "ft-fc", "ft-all"],
    },
]
search = GridSearchCV(
    pipe, grid, cv=StratifiedKFold(2, shuffle=True, random_state=0)
)
search.fit(X, y)
best = search.best_params_
strategy = best["tuner__strategy"]
if best["denoise"] == "passthrough":
    print(f"best: {strategy!r} without preprocessing")
else:
    print(f"best: {strategy!r} after median filter {best['denoise__kw_args']}")
print(f"test accuracy {search.score(X_test, y_test):.3f}")

# %%
# Mean cross-validated accuracy of every combination:
results = search.cv_results_
preprocessing = [
    "none"
    if p["denoise"] == "passthrough"
    else f"median {p['denoise__kw_args']['size']}"
    for p in results["params"]
]
strategies = ["fast", "ft-fc", "ft-all"]
rows = list(dict.fromkeys(preprocessing))
scores = np.full((len(rows), len(strategies)), np.nan)
for pre, params, score in zip(
    preprocessing, results["params"], results["mean_test_score"]
):
    scores[rows.index(pre), strategies.index(params["tuner__strategy"])] = (
        score
    )
fig, ax = plt.subplots(figsize=(6, 3.2))
width = 0.8 / len(rows)
for i, pre in enumerate(rows):
    ax.bar(
        np.arange(len(strategies)) + (i - (len(rows) - 1) / 2) * width,
        scores[i],
        width,
        label=f"preprocessing: {pre}",
    )
ax.set_xticks(np.arange(len(strategies)), strategies)
ax.set(
    ylabel="mean CV accuracy",
    ylim=(0, 1),
    title="Pipeline(denoise, FlexTuner)",
)
ax.legend(loc="lower right", fontsize="small")
fig.tight_layout()

# %%
# Whether the filter helps is for the cross-validation to say: a tuned first
# unit can learn to ignore the noise by itself.
for pre, params, score, std in zip(
    preprocessing,
    results["params"],
    results["mean_test_score"],
    results["std_test_score"],
):
    strategy = params["tuner__strategy"]
    print(f"{strategy:<7} after {pre:<9} {score:.3f} +/- {std:.3f}")

# %%
# The fitted search, and the tuner it holds, pickle like any scikit-learn
# estimator: keep it, or send it to another process.
restored = pickle.loads(pickle.dumps(search))
print(restored.best_params_, restored.best_estimator_.__class__.__name__)

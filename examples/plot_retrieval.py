"""
=====================================
Retrieval mAP@k as a scoring metric
=====================================

Tuning only the last unit keeps the pretrained features, which a shifted
domain has knocked out of place; tuning an earlier unit can "mend" them, so
that target images land next to source images of their class (the paper's
Section 5.3). :func:`~flexsk.metrics.make_retrieval_scorer` measures this as
a scikit-learn scorer: the mean average precision at ``k`` of target images,
embedded by the tuned net, queried against source images embedded by the
pretrained net.
"""

# %%
# A source gallery and rotated target queries
# -------------------------------------------
import pickle

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from flexsk import FlexTuner
from flexsk.datasets import load_digits_source, make_digits_shift
from flexsk.metrics import make_retrieval_scorer, map_at_k
from flexsk.zoo import load_source_net

torch.set_num_threads(1)

net = load_source_net("conv4")
# the gallery: held-out source digits
X_source, y_source = load_digits_source(split="test", return_X_y=True)
X, y = make_digits_shift("rotation", split="train", return_X_y=True)
X_test, y_test = make_digits_shift("rotation", split="test", return_X_y=True)

# %%
# :func:`~flexsk.metrics.map_at_k` scores any embeddings. The pretrained net's
# penultimate features of the rotated digits retrieve source digits of the
# right class poorly:
tuner = FlexTuner(
    net, strategy="ft-fc", max_epochs=30, patience=3, random_state=0
)
tuner.fit(X, y)
gallery = tuner.pretrained_transform(X_source)
print(
    "mAP@10, pretrained features:",
    round(
        map_at_k(
            tuner.pretrained_transform(X_test), y_test, gallery, y_source, k=10
        ),
        3,
    ),
)
print(
    "mAP@10, after ft-fc:        ",
    round(
        map_at_k(tuner.transform(X_test), y_test, gallery, y_source, k=10), 3
    ),
)

# %%
# Tuning the last unit (``"ft-fc"``) cannot change the features below it, so
# its mAP is the pretrained one.
#
# mAP@10 in a grid search
# -----------------------
# The scorer takes the source gallery once; inside the search it embeds the
# gallery with each candidate's pretrained net (cached across candidates and
# folds) and the held-out fold with the tuned net. Several metrics can be
# scored at once; ``refit`` names the one that picks ``best_estimator_``.
scoring = {
    "accuracy": "accuracy",
    "mAP@10": make_retrieval_scorer(X_source, y_source, k=10),
}
search = GridSearchCV(
    FlexTuner(net, max_epochs=30, patience=3, random_state=0),
    {"strategy": ["ft-fc", "faster", "fast", "ft-all"]},
    scoring=scoring,
    refit="mAP@10",
    cv=StratifiedKFold(2, shuffle=True, random_state=0),
)
search.fit(X, y)
results = search.cv_results_
strategies = [p["strategy"] for p in results["params"]]
for name, acc, mean_ap in zip(
    strategies, results["mean_test_accuracy"], results["mean_test_mAP@10"]
):
    print(f"{name:<7} accuracy {acc:.3f}   mAP@10 {mean_ap:.3f}")

fig, ax = plt.subplots(figsize=(6, 3.2))
x = np.arange(len(strategies))
ax.bar(
    x - 0.2,
    results["mean_test_accuracy"],
    0.4,
    yerr=results["std_test_accuracy"],
    label="accuracy",
    color="tab:blue",
    capsize=3,
)
ax.bar(
    x + 0.2,
    results["mean_test_mAP@10"],
    0.4,
    yerr=results["std_test_mAP@10"],
    label="mAP@10 against the source",
    color="tab:orange",
    capsize=3,
)
ax.set_xticks(x, strategies)
ax.set(
    ylim=(0, 1),
    ylabel="mean over 2 CV folds",
    title="GridSearchCV(scoring=...)",
)
ax.legend(loc="upper left", fontsize="small")
fig.tight_layout()

# %%
# The best estimator by mAP@10, on the test set:
best = search.best_estimator_
print(
    f"{best.strategy!r} tuned {best.selected_unit_!r}: test mAP@10 "
    f"{search.scorer_['mAP@10'](best, X_test, y_test):.3f}, "
    f"test accuracy {best.score(X_test, y_test):.3f}"
)

# %%
# What the metric sees
# --------------------
# The source gallery (large pale discs) and the rotated test digits (small
# dots), both coloured by class, in the first two principal components of
# the gallery's embedding. A query scores well when the gallery items around
# it have its colour.
pca = PCA(2).fit(gallery)
fig, axes = plt.subplots(1, 2, figsize=(8, 3.8), sharex=True, sharey=True)
style = dict(cmap="tab10", vmin=-0.5, vmax=9.5)
for ax, (title, model) in zip(
    axes,
    [
        ("ft-fc (pretrained features)", tuner),
        (f"{best.strategy}: {best.selected_unit_}", best),
    ],
):
    g = pca.transform(model.pretrained_transform(X_source))
    t = pca.transform(model.transform(X_test))
    ax.scatter(
        g[:, 0], g[:, 1], c=y_source, s=60, alpha=0.25, linewidths=0, **style
    )
    points = ax.scatter(t[:, 0], t[:, 1], c=y_test, s=6, **style)
    ax.set_title(title, fontsize="medium")
fig.colorbar(points, ax=axes, ticks=range(10), label="digit")

# %%
# The fitted search, and the tuner it holds, pickle like any scikit-learn
# estimator: keep it, or send it to another process.
restored = pickle.loads(pickle.dumps(search))
print(restored.best_params_, restored.best_estimator_.__class__.__name__)

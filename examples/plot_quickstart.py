"""
==========
Quickstart
==========

A network pretrained on clean digits (the *source* domain) meets rotated
digits (the *target* domain) and only ten labelled examples per class.
:class:`~flexsk.FlexTuner` fine-tunes the one unit of the network that the
rotation calls for, and picks it on validation data.
"""

# %%
# The data and the pretrained network
# -----------------------------------
# :func:`~flexsk.zoo.load_source_net` returns a skorch
# :class:`~skorch.classifier.NeuralNetClassifier` pretrained on the clean
# source digits (trained on first use in a few seconds, then cached on
# disk). :func:`~flexsk.datasets.make_digits_shift` returns the target
# digits under a shift, split into fixed ``train``, ``val`` and ``test``
# parts; :func:`~flexsk.datasets.train_val_test_split` draws a small
# training set from the train part, and returns it with the other two.
import pickle

import matplotlib.pyplot as plt
import torch

from flexsk import FlexTuner
from flexsk.datasets import (
    load_digits_source,
    make_digits_shift,
    train_val_test_split,
)
from flexsk.zoo import load_source_net

torch.set_num_threads(1)  # these nets are tiny: one thread is the fastest

net = load_source_net("conv7")  # 5 convolutional and 2 fully connected units
# every digit turned by 30 degrees:
target = make_digits_shift("rotation", split="all")
# 10 images per class:
X_train, y_train, X_val, y_val, X_test, y_test = train_val_test_split(
    target, 10, random_state=0
)
print(f"train {X_train.shape}, validation {X_val.shape}, test {X_test.shape}")

# %%
# Source digits on the top row, the rotated target digits below:
X_source, y_source = load_digits_source(split="test", return_X_y=True)
fig, axes = plt.subplots(2, 8, figsize=(8, 2.3))
for digit in range(8):
    axes[0, digit].imshow(X_source[y_source == digit][0, 0], cmap="gray")
    axes[1, digit].imshow(X_test[y_test == digit][0, 0], cmap="gray")
for ax in axes.flat:
    ax.set_axis_off()
axes[0, 0].set_title("source", loc="left", fontsize="small")
axes[1, 0].set_title("target: rotation", loc="left", fontsize="small")
fig.tight_layout()

# %%
# The pretrained network on held-out source digits, and on the rotated ones:
print(f"source test accuracy: {net.score(X_source, y_source):.3f}")
print(f"target test accuracy: {net.score(X_test, y_test):.3f}")

# %%
# Flex-tune
# ---------
# ``strategy="fast"`` (the paper's Algorithm 2) fine-tunes all units once,
# scores *proxy* networks (the pretrained net with a single unit taken from
# the fully tuned one) on the validation set, fine-tunes the best proxy's
# unit from the pretrained weights, and keeps it unless tuning everything
# validated better: a higher accuracy, or the same accuracy and a lower
# loss. Every training run stops early once validation stops improving.
# Then (``refit=True``, the default) the pick is trained once more from the
# pretrained weights, on the training and validation images together. The
# network you pass in is never modified.
tuner = FlexTuner(net, strategy="fast", random_state=0)
tuner.fit(X_train, y_train, X_val=X_val, y_val=y_val)
print(f"units: {tuner.units_}")
print(f"selected unit: {tuner.selected_unit_!r}")
print(f"epochs of the selection runs: {tuner.n_epochs_}")
print(f"fit in {tuner.fit_time_:.1f} s (the refit: {tuner.refit_time_:.1f} s)")
print(f"target test accuracy after tuning: {tuner.score(X_test, y_test):.3f}")

# %%
# Why that unit: the validation accuracy of each proxy network, and of the
# models fine-tuned in full.
fig, (ax1, ax2) = plt.subplots(
    1, 2, figsize=(8, 3), width_ratios=[7, 2], sharey=True
)
ax1.bar(
    list(tuner.proxy_scores_),
    list(tuner.proxy_scores_.values()),
    color="tab:gray",
)
if tuner.selected_unit_ in tuner.proxy_scores_:
    ax1.bar(
        [tuner.selected_unit_],
        [tuner.proxy_scores_[tuner.selected_unit_]],
        color="tab:red",
        label="selected",
    )
ax1.set(
    title="proxy nets (one unit from ft-all)",
    ylabel="validation accuracy",
    xlabel="unit",
)
ax1.legend(loc="lower left")
keys = [str(k) for k in tuner.validation_scores_]
ax2.bar(keys, list(tuner.validation_scores_.values()), color="tab:blue")
ax2.set(title="fine-tuned", xlabel="model")
fig.tight_layout()

# %%
# A scikit-learn classifier and transformer
# -----------------------------------------
# The fitted tuner predicts labels and probabilities, and
# :meth:`~flexsk.FlexTuner.transform` embeds images with the tuned net's
# penultimate features (the input of the last unit).
print(tuner.predict(X_test[:10]), y_test[:10])
print(tuner.predict_proba(X_test[:2]).round(2))
print(f"embedding: {tuner.transform(X_test).shape}")

# %%
# The fitted tuner pickles like any scikit-learn estimator: keep it, or send it to
# another process.
restored = pickle.loads(pickle.dumps(tuner))
print(restored, restored.selected_unit_)

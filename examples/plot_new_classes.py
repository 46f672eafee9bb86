"""
=================================================
New classes: a new head, and what to tune with it
=================================================

The most common fine-tuning task: a network pretrained on some classes, and
a small labelled set of *other* classes. Here the source network knows the
digits 0 to 4 only; the target task is the digits 5 to 9, named by words,
and blurred. :class:`~flexsk.FlexTuner` gives the network a new output
layer (a *head*) for the new labels, and picks which unit to tune with it.
It is compared with the two classic ways to reuse a pretrained network for
new classes: a linear probe (the new head alone, ``strategy="ft-fc"``) and a
logistic regression on the pretrained features.
"""

# %%
# A source net for other classes
# ------------------------------
# ``digits=[0, 1, 2, 3, 4]`` pretrains the zoo's conv7 on those digits only
# (a few seconds on first use, then cached).
import pickle

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from flexsk import FlexTuner
from flexsk.datasets import make_digits_shift, subsample_per_class
from flexsk.zoo import load_source_net

torch.set_num_threads(1)  # these nets are tiny: one thread is the fastest

net = load_source_net("conv7", digits=[0, 1, 2, 3, 4])
print(f"the source net's classes: {net.classes}")

names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                  "nine"])


def new_digits(split):
    """Blurred digits 5-9 of a split, labelled by name."""
    X, digits = make_digits_shift("blur", split=split, return_X_y=True)
    keep = digits >= 5
    return X[keep], names[digits[keep]]


X_pool, y_pool = new_digits("train")
train = subsample_per_class(y_pool, 10, random_state=0)  # 10 images per class
X_train, y_train = X_pool[train], y_pool[train]
X_val, y_val = new_digits("val")
X_test, y_test = new_digits("test")
print(f"train {X_train.shape}, labels {sorted(set(y_train.tolist()))}")

# %%
# Flex-tuning with a new head
# ---------------------------
# The labels are words that the net does not declare, so ``head="auto"``
# (the default) replaces its output layer ``fc2`` by a new one with five
# outputs, which trains in every candidate: flex tunes each unit *and the
# head*, and everything (``"all"``), then keeps the best on validation.
tuner = FlexTuner(net, strategy="flex", random_state=0)
tuner.fit(X_train, y_train, X_val=X_val, y_val=y_val)
print(f"new head: {tuner.head_!r}, classes: {tuner.classes_.tolist()}")
print(f"selected unit: {tuner.selected_unit_!r}")
print(f"predictions: {tuner.predict(X_test[:4]).tolist()}")

# %%
# Against the linear probe and a logistic regression
# ----------------------------------------------------
# ``strategy="ft-fc"`` tunes the last unit, here the new head alone: a linear
# probe. Its run starts the head as a logistic regression on the pretrained
# features of the training images, and refines it by gradient descent. The
# classic baseline is that logistic regression alone: scikit-learn's, on the
# pretrained embedding (:meth:`~flexsk.FlexTuner.pretrained_transform`, the
# input of the last unit) of the same training and validation images.
probe = FlexTuner(net, strategy="ft-fc", random_state=0)
probe.fit(X_train, y_train, X_val=X_val, y_val=y_val)
logreg = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
logreg.fit(probe.pretrained_transform(np.concatenate([X_train, X_val])),
           np.concatenate([y_train, y_val]))

scores = {
    "logistic regression\non pretrained features": logreg.score(
        probe.pretrained_transform(X_test), y_test),
    "linear probe\n(ft-fc: the head)": probe.score(X_test, y_test),
    f"flex\n({tuner.selected_unit_}"
    + ("" if tuner.selected_unit_ == "all" else " + head") + ")": tuner.score(X_test, y_test),
}
for name, score in scores.items():
    print(f"{name.replace(chr(10), ' '):45s} test accuracy {score:.3f}")

# %%
# Validation accuracy of each candidate (each unit with the head, and
# ``"all"``), and the test accuracies above:
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
keys = list(tuner.validation_scores_)
left.bar([str(k) for k in keys], [tuner.validation_scores_[k] for k in keys],
         color=["tab:orange" if k == tuner.selected_unit_ else "tab:blue" for k in keys])
left.set_ylabel("validation accuracy")
left.set_title("flex's candidates (unit + new head)")
left.set_ylim(0, 1)
right.barh(list(scores), list(scores.values()), color="tab:green")
right.set_xlim(0, 1)
right.set_xlabel("test accuracy")
fig.tight_layout()
plt.show()

# %%
# The fitted tuner pickles like any scikit-learn estimator: keep it, or send it to
# another process.
restored = pickle.loads(pickle.dumps(tuner))
print(restored, restored.selected_unit_)

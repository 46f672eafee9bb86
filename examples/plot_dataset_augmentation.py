"""
================================================
Your own images in a Dataset, with augmentation
================================================

:meth:`FlexTuner.fit <flexsk.FlexTuner.fit>` takes a
:class:`torch.utils.data.Dataset` of ``(x, y)`` pairs as well as arrays. It
reads the Dataset through a :class:`~torch.utils.data.DataLoader` at every
pass over the data, so a Dataset that augments its images at random draws a
new augmentation at every epoch. This example writes such a Dataset (small
random shifts and pixel noise, with torch operations), counts how often each
image is read, and predicts from Datasets too.
"""

# %%
# A Dataset that augments
# -----------------------
# Each read of a training image shifts it by up to one pixel in each
# direction and adds a little noise. The Dataset counts its reads, to see
# what the tuner does with it. Validation and test images are not augmented.
import pickle

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from flexsk import FlexTuner
from flexsk.datasets import make_digits_shift, train_val_test_split
from flexsk.zoo import load_source_net

torch.set_num_threads(1)


class Digits(Dataset):
    """Images and labels; ``augment=True`` draws a shift and noise per read."""

    def __init__(self, X, y, augment=False, seed=0):
        self.X = torch.as_tensor(X)
        self.y = torch.as_tensor(y)
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)
        self.reads = np.zeros(len(self.X), dtype=int)

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        self.reads[i] += 1
        x = self.X[i]
        if self.augment:
            dy, dx = torch.randint(-1, 2, (2,), generator=self.generator)
            x = torch.roll(x, shifts=(int(dy), int(dx)), dims=(1, 2))
            x = x + 0.05 * torch.randn(x.shape, generator=self.generator)
        return x, self.y[i]


net = load_source_net("conv4")
target = make_digits_shift("scaling")  # digits shrunk or enlarged
X_train, y_train, X_val, y_val, X_test, y_test = train_val_test_split(
    target, 10, random_state=0
)
train = Digits(X_train, y_train, augment=True)
val = Digits(X_val, y_val)
test = Digits(X_test, y_test)

# %%
# The same training image, read six times:
preview = Digits(X_train, y_train, augment=True, seed=1)
fig, axes = plt.subplots(1, 6, figsize=(7, 1.5))
for ax in axes:
    ax.imshow(preview[0][0][0], cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
fig.tight_layout()

# %%
# Fitting on Datasets
# -------------------
# ``y`` is None (the Dataset carries the labels), and so is ``y_val``. The
# tuner builds its DataLoaders with the base net's batch size and its
# ``iterator_train__*`` and ``iterator_valid__*`` settings (``num_workers``,
# ``collate_fn``, ...); it sets the batching and the order itself.
tuner = FlexTuner(net, strategy="fast", random_state=0)
tuner.fit(train, X_val=val)
print(f"selected {tuner.selected_unit_!r} in {tuner.fit_time_:.1f} s")
print(f"epochs of the selection runs: {tuner.n_epochs_}")
print(f"epochs of the refit: {tuner.refit_epochs_}")

# %%
# Every training image was read once when the fit read the labels, then at
# every epoch of every training run: ``fast`` trains all units (ft-all),
# then the unit of the best proxy net, and the refit trains the pick once
# more on the training and validation images together (its last epoch may
# stop part-way, after the number of optimizer steps it was given). Each
# read drew a new shift and new noise.
selection_epochs = sum(tuner.n_epochs_.values())
print(f"1 + {selection_epochs} selection epochs + {tuner.refit_epochs_} refit")
print(
    f"reads per training image: min {train.reads.min()}, "
    f"median {int(np.median(train.reads))}, max {train.reads.max()}"
)

# %%
# The frozen units below the tuned one compute the same outputs at every
# epoch, and the tuner can compute them once (``activation_cache``). With
# ``activation_cache="auto"``, the default, it never does so for the
# training passes over a Dataset, since they may augment; validation passes
# may be cached. ``activation_cache=True`` would cache the training passes
# too, and so freeze one draw of the augmentation.
#
# Predicting from a Dataset
# -------------------------
# ``predict``, ``predict_proba``, ``transform`` and ``score`` take a Dataset
# of ``x`` or of ``(x, y)`` pairs; ``score`` uses the labels of the pairs.
print(f"test accuracy before tuning: {net.score(X_test, y_test):.3f}")
print(f"test accuracy after tuning:  {tuner.score(test):.3f}")
inputs_only = TensorDataset(torch.as_tensor(X_test))
predicted = tuner.predict(inputs_only)
assert (predicted == tuner.predict(X_test)).all()  # the same as from arrays
print(predicted[:10], y_test[:10])

# %%
# The fitted tuner pickles like any scikit-learn estimator: keep it, or send it to
# another process.
restored = pickle.loads(pickle.dumps(tuner))
print(restored, restored.selected_unit_)

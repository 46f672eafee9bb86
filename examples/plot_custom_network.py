"""
=========================
Bring your own network
=========================

:class:`~flexsk.FlexTuner` takes any PyTorch network wrapped in a skorch
:class:`~skorch.classifier.NeuralNetClassifier`. This example writes a small
ResNet (residual blocks with BatchNorm, named like torchvision's ResNets),
pretrains it on the clean source digits, and flex-tunes it to rotated digits
with three different splits into units: the automatic one, units named by
their dotted module names, and named groups of modules.
"""

# %%
# A small ResNet
# --------------
# Two stages of two residual blocks, a stem (``conv1``, ``bn1``) and a
# classifier head (``fc``): the layout of ``torchvision.models.resnet18``
# (which has four stages and a max-pooling stem), shrunk for 16x16 digits.
import pickle

import matplotlib.pyplot as plt
import torch
from skorch import NeuralNetClassifier
from torch import nn

from flexsk import FlexTuner
from flexsk.datasets import (
    load_digits_source,
    make_digits_shift,
    train_val_test_split,
)

torch.set_num_threads(1)


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus a shortcut (1x1 conv if the shape changes)."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, out_channels, 3, stride, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(
            out_channels, out_channels, 3, padding=1, bias=False
        )
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class TinyResNet(nn.Module):
    def __init__(self, n_classes=10, width=16):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(
            BasicBlock(width, width), BasicBlock(width, width)
        )
        self.layer2 = nn.Sequential(
            BasicBlock(width, 2 * width, stride=2),
            BasicBlock(2 * width, 2 * width),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, n_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# %%
# Pretraining on the source domain
# --------------------------------
# Any skorch classifier works: fitted as here, merely initialized, or built
# around a module instance that already holds pretrained weights. The
# network outputs logits, hence :class:`~torch.nn.CrossEntropyLoss`.
X_source, y_source = load_digits_source(split="train", return_X_y=True)
torch.manual_seed(0)
net = NeuralNetClassifier(
    TinyResNet,
    criterion=nn.CrossEntropyLoss,
    optimizer=torch.optim.Adam,
    lr=3e-3,
    batch_size=64,
    max_epochs=12,
    train_split=None,
    iterator_train__shuffle=True,
    verbose=0,
)
net.fit(X_source, y_source)
X_source_test, y_source_test = load_digits_source(
    split="test", return_X_y=True
)
print(f"source test accuracy: {net.score(X_source_test, y_source_test):.3f}")

# %%
# The target domain: digits rotated by 30 degrees, 10 per class.
target = make_digits_shift("rotation")
X_train, y_train, X_val, y_val, X_test, y_test = train_val_test_split(
    target, 10, random_state=0
)
print(f"target test accuracy before tuning: {net.score(X_test, y_test):.3f}")

# %%
# Three ways to split the network into units
# ------------------------------------------
# - ``"auto"``: every top-level child that owns parameters is a unit
#   (``relu`` and ``avgpool`` own none).
# - A list of dotted module names: one unit per residual block here. The
#   stem's modules are in no unit, so they stay frozen (only the ``"all"``
#   candidate, ft-all, trains every parameter).
# - A dict: named groups of modules, e.g. the stem as one unit.
#
# Units are ordered as the forward pass runs them, whatever the order given.
splits = {
    "auto": "auto",
    "blocks": ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "fc"],
    "groups": {
        "stem": ["conv1", "bn1"],
        "layer1": ["layer1"],
        "layer2": ["layer2"],
        "head": ["fc"],
    },
}
tuners = {}
for name, units in splits.items():
    tuners[name] = FlexTuner(
        net,
        units=units,
        strategy="flex",
        lr=1e-3,
        max_epochs=30,
        patience=3,
        keep_candidates=True,
        random_state=0,
    )
    tuners[name].fit(X_train, y_train, X_val=X_val, y_val=y_val)
    tuner = tuners[name]
    print(f"{name}: units_ = {tuner.units_}")
    print(
        f"    selected {tuner.selected_unit_!r}, "
        f"test accuracy {tuner.score(X_test, y_test):.3f}, "
        f"fit {tuner.fit_time_:.1f} s"
    )

# %%
# The validation accuracy of every candidate, per split. Frozen units run in
# eval mode during training, so their BatchNorm statistics do not move.
fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), sharey=True)
for ax, (name, tuner) in zip(axes, tuners.items()):
    keys = [str(k) for k in tuner.validation_scores_]
    colors = [
        "tab:red" if k == tuner.selected_unit_ else "tab:blue" for k in keys
    ]
    ax.bar(keys, list(tuner.validation_scores_.values()), color=colors)
    ax.set_title(f"units={name!r}" if name == "auto" else f"units: {name}")
    ax.tick_params(axis="x", labelsize="small", rotation=45)
axes[0].set_ylabel("validation accuracy")
axes[0].set_ylim(0, 1)
fig.suptitle("flex-tuning a TinyResNet: red = selected")
fig.tight_layout()

# %%
# Each candidate differs from the pretrained network only inside its unit,
# BatchNorm statistics included: here the candidate that tuned the group
# ``layer1``.
tuned = tuners["groups"].candidates_["layer1"]
pretrained = net.module_.state_dict()
changed = sorted(
    {
        name.split(".")[0]
        for name, value in tuned.state_dict().items()
        if not torch.equal(value, pretrained[name])
    }
)
print(f"top-level modules whose weights or statistics changed: {changed}")

# %%
# The fitted tuners pickle like any scikit-learn estimator: keep them, or send
# them to another process.
restored = pickle.loads(pickle.dumps(tuners))
print({key: type(value).__name__ for key, value in restored.items()})

"""Two networks of a user's own, not the zoo's, for the measuring scripts.

A plain CNN (``"plaincnn"``: three convolutions, two linear layers) and a
small residual net with BatchNorm (``"resbn"``: a stem, three residual
blocks, a linear head), for 16-pixel grey digits. They are built with torch
and skorch alone, so that a script measuring another checkout of flexsk
(``cost.py pair``) builds the same nets.
"""

from collections import OrderedDict

import torch
from skorch import NeuralNetClassifier
from torch import nn

NAMES = ("plaincnn", "resbn")


class Residual(nn.Module):
    def __init__(self, channels_in, channels_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.skip = (nn.Identity() if stride == 1 and channels_in == channels_out else
                     nn.Sequential(nn.Conv2d(channels_in, channels_out, 1, stride=stride,
                                             bias=False), nn.BatchNorm2d(channels_out)))

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.skip(x))


class ResBN(nn.Module):
    """A small residual network with BatchNorm: stem, three blocks, head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(16), nn.ReLU())
        self.block1 = Residual(16, 16, 1)
        self.block2 = Residual(16, 32, 2)
        self.block3 = Residual(32, 64, 2)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        h = self.block3(self.block2(self.block1(self.stem(x))))
        return self.head(h.mean(dim=(2, 3)))


def plain_cnn():
    return nn.Sequential(OrderedDict(
        c1=nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        c2=nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        c3=nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.ReLU()),
        flatten=nn.Flatten(),
        fc1=nn.Sequential(nn.Linear(64 * 4 * 4, 64), nn.ReLU()),
        fc2=nn.Linear(64, 10)))


def source_net(name, X=None, y=None, state_dict=None):
    """The net ``name`` (torch's seed 0), pretrained on ``X, y`` or given its weights.

    Pretraining: Adam, lr 3e-3, batches of 64, 20 epochs. The net returned
    has the fine-tuning settings, lr 1e-3 and batches of 32.
    """
    if name not in NAMES:
        raise ValueError(f"unknown net {name!r}; the nets are {NAMES}.")
    torch.manual_seed(0)
    module = plain_cnn() if name == "plaincnn" else ResBN()
    net = NeuralNetClassifier(module, criterion=nn.CrossEntropyLoss,
                              optimizer=torch.optim.Adam, lr=3e-3, batch_size=64,
                              max_epochs=20, train_split=None, verbose=0)
    if state_dict is None:
        net.fit(X, y)
    else:
        net.initialize()
        net.module_.load_state_dict(state_dict)
    return net.set_params(lr=1e-3, batch_size=32)

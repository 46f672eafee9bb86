"""Where a default fit's time goes on a ResNet-18-shaped net, new classes, on the CPU.

torchvision's ResNet-18 architecture (11.2 M parameters; written out here so
that torchvision is not needed), pretrained briefly on the source digits 0-4
at 32 px, 3 channels. The target: the digits 5-9, blurred, labelled with
words (a new head, ``head="auto"``), ``--n-per-class`` images per class, with
FlexTuner's internal validation split; every setting at its default, and the
base net fine-tunes as a new user's would, with skorch's default optimizer
(SGD, lr 0.01; ``--optimizer adam`` for Adam at lr 1e-3). The net splits into
its 7 top-level units (conv1, bn1, layer1-4, fc).

For each strategy it prints the fit's seconds, the refit's, every training
run's optimizer steps and seconds (from ``on_epoch``), and the test accuracy.

    python benchmarks/resnet_cost.py --strategies fast ft-all      # about 10 minutes
    python benchmarks/resnet_cost.py --strategies flex --threads 2

One torch thread by default.
"""

import argparse
import json
import time

import numpy as np
import torch
from skorch import NeuralNetClassifier
from torch import nn

from flexsk import FlexTuner
from flexsk.datasets import load_digits_source, make_digits_shift, train_val_test_split

WORDS = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                  "nine"])


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                            nn.BatchNorm2d(c_out))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    """torchvision.models.resnet18's layout and module names."""

    def __init__(self, n_classes=5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = [64, 128, 256, 512]
        layers, c_in = [], 64
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(c_in, width, stride),
                                        BasicBlock(width, width, 1)))
            c_in = width
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, n_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def source_net(epochs=10, optimizer="sgd"):
    """The ResNet-18 pretrained briefly on the source digits 0-4 (32 px, colour) with Adam,
    then set to fine-tune as a new user's net would: skorch's defaults (SGD, lr 0.01,
    batches of 128), or Adam at lr 1e-3 (``optimizer="adam"``)."""
    torch.manual_seed(0)
    X, y = load_digits_source(split="train", image_size=32, n_channels=3, return_X_y=True)
    keep = y < 5
    net = NeuralNetClassifier(ResNet18(), criterion=nn.CrossEntropyLoss,
                              optimizer=torch.optim.Adam, lr=1e-3, max_epochs=epochs,
                              train_split=None, verbose=0)
    net.fit(X[keep], y[keep])
    if optimizer == "sgd":
        net.optimizer = torch.optim.SGD
        net.set_params(lr=0.01)
        net.initialize_optimizer()
    return net


def target(n_per_class, seed):
    bunch = make_digits_shift("blur", image_size=32, n_channels=3, random_state=0)
    keep = bunch.target >= 5
    for key in ("data", "target", "split"):
        bunch[key] = bunch[key][keep]
    X, y, X_val, y_val, X_test, y_test = train_val_test_split(bunch, n_per_class,
                                                              random_state=seed)
    return X, WORDS[y], X_test, WORDS[y_test]


class Runs:
    """on_epoch: every run's optimizer steps and seconds."""

    def __init__(self):
        self.rows, self.last = [], None

    def __call__(self, record):
        now = time.perf_counter()
        if record.epoch == 0:
            self.rows.append(dict(run=str(record.candidate), refit=record.refit, steps=0,
                                  epochs=0, seconds=0.0))
        else:
            row = self.rows[-1]
            row.update(steps=record.n_steps, epochs=record.epoch)
            row["seconds"] += now - self.last
        self.last = now


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", nargs="+", default=["fast", "ft-all"])
    parser.add_argument("--n-per-class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd",
                        help="the fine-tuning optimizer: skorch's default SGD at lr 0.01 (a "
                        "new user's net), or Adam at lr 1e-3")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    net = source_net(args.pretrain_epochs, args.optimizer)
    X, y, X_test, y_test = target(args.n_per_class, args.seed)
    results = []
    for strategy in args.strategies:
        runs = Runs()
        tuner = FlexTuner(net, strategy=strategy, random_state=args.seed, on_epoch=runs)
        tuner.fit(X, y)
        result = dict(strategy=strategy, fit_seconds=round(tuner.fit_time_, 1),
                      refit_seconds=round(tuner.refit_time_, 1),
                      selected=str(tuner.selected_unit_),
                      test_accuracy=round(float(np.mean(tuner.predict(X_test) == y_test)), 4),
                      runs=[{k: round(v, 1) if isinstance(v, float) else v
                             for k, v in row.items()} for row in runs.rows])
        results.append(result)
        print(json.dumps(result), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()

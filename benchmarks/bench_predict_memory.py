"""Peak memory of ``predict`` on many large images: how much above the inputs it rises.

4000 colour images of 64 x 64 through a two-convolution net whose training
batch size is 32. The inputs are made first; the figure is the rise in the
process's peak resident memory (``ru_maxrss``) during ``predict`` alone.

    python benchmarks/bench_predict_memory.py

Run it several times (each run is a fresh process) and quote the median.
"""

import inspect
import resource
import sys
import warnings

import numpy as np
import torch
from skorch import NeuralNetClassifier
from torch import nn

from flexsk import FlexTuner


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
                           nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                           nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    net = NeuralNetClassifier(module, criterion=nn.CrossEntropyLoss,
                              optimizer=torch.optim.Adam, lr=1e-3, batch_size=32)
    rng = np.random.RandomState(0)
    X = np.empty((4000, 3, 64, 64), dtype=np.float32)
    for start in range(0, len(X), 100):  # no float64 temporary the size of X
        X[start:start + 100] = rng.rand(100, 3, 64, 64)
    y = np.arange(4000) % 10
    params = dict(strategy="ft-fc", max_epochs=1, random_state=0)
    if "refit" in inspect.signature(FlexTuner).parameters:  # the selection run alone
        params["refit"] = False
    tuner = FlexTuner(net, **params)
    with warnings.catch_warnings():  # random labels: a meaningless pick, by design here
        warnings.simplefilter("ignore", UserWarning)
        tuner.fit(X[:100], y[:100], X_val=X[100:200], y_val=y[100:200])
    before = peak_mib()
    tuner.predict(X)
    rise = peak_mib() - before
    print(f"inputs {X.nbytes / 2 ** 20:.0f} MiB; peak RSS before predict {before:.0f} MiB; "
          f"rise during predict {rise:.0f} MiB (batches of "
          f"{getattr(tuner, '_eval_batch_size', 1024)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The settings FlexTuner picks for speed on a CPU, measured: memory format and optimizer.

1. The channels-last memory format against the default one, for a training
   step (forward, backward, Adam) on 32 and 80 images and for a forward pass
   without gradients on 200 (a validation pass), on the zoo's conv4 and
   conv7, the two nets of a user's own of ``benchmarks/cost.py`` and a
   ResNet-18 (``benchmarks/resnet_cost.py``), with 1 and 2 torch threads.
   Median of 7 timings after 3 warm-ups, the two formats in one process.
2. Adam and AdamW one tensor at a time against their multi-tensor
   (``foreach``) implementation: the time of a step on conv4's and conv7's
   parameters, and whether 50 steps give the same weights to the bit.

    python benchmarks/bench_kernels.py        # about a minute

Prints markdown tables.
"""

import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))

import cost  # noqa: E402
import resnet_cost  # noqa: E402
from flexsk.zoo import load_source_net  # noqa: E402


def nets():
    return {"conv4": (load_source_net("conv4", image_size=16).module_, 1, 16),
            "conv7": (load_source_net("conv7", image_size=16).module_, 1, 16),
            "plaincnn": (cost.own_net("plaincnn", cost.DEFAULT_CACHE).module_, 1, 16),
            "resbn": (cost.own_net("resbn", cost.DEFAULT_CACHE).module_, 1, 16),
            "resnet18": (resnet_cost.ResNet18(), 3, 32)}


def median_time(module, X, y, channels_last, train):
    module = copy.deepcopy(module)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
        X = X.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(module.parameters(), 1e-3)

    def step():
        if train:
            module.train()
            optimizer.zero_grad()
            nn.functional.cross_entropy(module(X), y).backward()
            optimizer.step()
        else:
            module.eval()
            with torch.no_grad():
                module(X)

    for _ in range(3):
        step()
    times = []
    for _ in range(7):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def memory_format_table(threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    lines = [f"### Channels-last / default layout, {threads} torch thread(s)", "",
             "| net | pass | images | default (ms) | channels-last (ms) | ratio |",
             "|---|---|---|---|---|---|"]
    for name, (module, channels, size) in nets().items():
        for train, n in ((True, 32), (True, 80), (False, 200)):
            X = torch.rand(n, channels, size, size)
            y = torch.randint(0, 5, (n,))
            default = median_time(module, X, y, False, train)
            last = median_time(module, X, y, True, train)
            lines.append(f"| {name} | {'training step' if train else 'validation'} | {n} | "
                         f"{1e3 * default:.2f} | {1e3 * last:.2f} | {last / default:.2f} |")
    return lines + [""]


def foreach_table():
    torch.set_num_threads(1)
    lines = ["### Adam and AdamW: multi-tensor (foreach) / one tensor at a time, 1 thread", "",
             "| net | optimizer | one at a time (us) | foreach (us) | ratio | same weights |",
             "|---|---|---|---|---|---|"]
    for name in ("conv4", "conv7"):
        module = load_source_net(name, image_size=16).module_
        for optimizer in (torch.optim.Adam, torch.optim.AdamW):
            times, weights = {}, {}
            for foreach in (False, True):
                params = [p.detach().clone().requires_grad_() for p in module.parameters()]
                opt = optimizer(params, lr=1e-3, foreach=foreach)
                generator = torch.Generator().manual_seed(0)
                for _ in range(50):  # the same gradients for both
                    for p in params:
                        p.grad = torch.randn(p.shape, generator=generator)
                    opt.step()
                weights[foreach] = params
                started = time.perf_counter()
                for _ in range(500):
                    opt.step()
                times[foreach] = (time.perf_counter() - started) / 500
            same = all(torch.equal(a, b) for a, b in zip(weights[False], weights[True]))
            lines.append(f"| {name} | {optimizer.__name__} | {1e6 * times[False]:.0f} | "
                         f"{1e6 * times[True]:.0f} | {times[True] / times[False]:.2f} | "
                         f"{same} |")
    return lines + [""]


def main():
    lines = memory_format_table(1) + memory_format_table(2) + foreach_table()
    print("\n".join(lines))


if __name__ == "__main__":
    main()

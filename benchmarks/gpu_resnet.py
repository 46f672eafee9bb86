"""GPU timings on a ResNet-18-sized net (not part of the test suite).

torchvision's ResNet-18 architecture with random weights as the
"pretrained" net, split into 6 units (stem, layer1-4, head), 4,000
synthetic 224-px images, batch 128, Adam. Compares flexsk with a
hand-written loop on the same tensors, and reports each strategy's wall time
with epochs capped.

    python benchmarks/gpu_resnet.py --epochs 2 --out results.md
"""

import argparse
import copy
import json
import statistics
import time

import numpy as np
import torch
import torchvision
from skorch import NeuralNetClassifier
from torch import nn

from flexsk import FlexTuner

UNITS = {"stem": ["conv1", "bn1"], "layer1": ["layer1"], "layer2": ["layer2"],
         "layer3": ["layer3"], "layer4": ["layer4"], "head": ["fc"]}


DEVICE = torch.device("cuda")


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def hand_written_epoch(module, modules_to_train, X, y, *, batch_size, autocast=None,
                       channels_last=False):
    """One epoch of a plain loop: the full net forward, frozen parameters, Adam."""
    module = copy.deepcopy(module)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    params = []
    for name, p in module.named_parameters():
        trains = modules_to_train is None or any(name.startswith(m + ".")
                                                 for m in modules_to_train)
        p.requires_grad_(trains)
        if trains:
            params.append(p)
    if modules_to_train is None:
        module.train()
    else:
        module.eval()
        for m in modules_to_train:
            module.get_submodule(m).train()
    optimizer = torch.optim.Adam(params, lr=1e-4)
    criterion = nn.CrossEntropyLoss()
    order = torch.randperm(len(X), device=X.device)
    for start in range(0, len(X), batch_size):
        idx = order[start:start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=autocast is not None):
            loss = criterion(module(X[idx]), y[idx])
        loss.backward()
        optimizer.step()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-images", type=int, default=4000)
    parser.add_argument("--n-val", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="gpu_resnet.md")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    global DEVICE
    DEVICE = device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    module = torchvision.models.resnet18(weights=None).to(device)
    X = torch.rand(args.n_images, 3, 224, 224, device=device)
    y = torch.randint(0, 10, (args.n_images,), device=device)
    # FlexTuner takes CUDA tensors as they are: validated on the device, never copied
    # through host memory.
    X_np, y_np = X, y.cpu().numpy()
    X_val_np = torch.rand(args.n_val, 3, 224, 224, device=device)
    y_val_np = np.random.RandomState(0).randint(0, 10, args.n_val)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    lines, record = [], {"device": name, "torch": torch.__version__}

    # -- the hand-written reference ----------------------------------------------------
    hand = {}
    for label, kwargs in [("fp32", {}), ("bf16", dict(autocast=True)),
                          ("channels_last", dict(channels_last=True)),
                          ("bf16 + channels_last", dict(autocast=True, channels_last=True))]:
        hand_written_epoch(module, None, X, y, batch_size=128, **kwargs)  # warm-up
        hand[label] = median_time(
            lambda: hand_written_epoch(module, None, X, y, batch_size=128, **kwargs),
            args.repeats)
    unit_modules = list(UNITS.values()) + [None]
    uncached_flex_epoch = median_time(
        lambda: [hand_written_epoch(module, m, X, y, batch_size=128) for m in unit_modules], 1)
    record["hand_written_epoch_s"] = hand
    record["hand_written_flex_epoch_s"] = uncached_flex_epoch
    lines.append(f"## ResNet-18, {args.n_images} images 224 px, batch 128, on "
                 f"{record['device']} (torch {torch.__version__})\n")
    lines.append("Hand-written loop, one epoch of ft-all (median of "
                 f"{args.repeats}), validation excluded:\n")
    lines.append("| variant | s/epoch | img/s |\n|---|---|---|")
    for label, seconds in hand.items():
        lines.append(f"| {label} | {seconds:.3f} | {args.n_images / seconds:.0f} |")
    lines.append(f"\nHand-written, one epoch of every flex candidate (6 units + all), no "
                 f"caching: {uncached_flex_epoch:.2f} s\n")

    # -- flexsk ---------------------------------------------------------------------------
    def net():
        return NeuralNetClassifier(copy.deepcopy(module).cpu(), criterion=nn.CrossEntropyLoss,
                                   optimizer=torch.optim.Adam, lr=1e-4, batch_size=128,
                                   device=args.device)

    # Cache activations up to 16 GiB: the default 1 GiB budget would leave the
    # early units of 4,500 images at 224 px uncached.
    cache = dict(activation_cache_bytes=16 * 2 ** 30)
    configs = {"fp32": cache, "bf16 + channels_last": dict(precision="bfloat16",
                                                           channels_last=True, **cache)}
    results = {}
    for config, options in configs.items():
        def fit(strategy, epochs):
            return FlexTuner(net(), units=UNITS, strategy=strategy, max_epochs=epochs,
                             patience=None, random_state=0, **options).fit(
                X_np, y_np, X_val=X_val_np, y_val=y_val_np)

        fit("flex", 1)  # warm-up at full size: cuDNN autotunes every shape once
        row = {}
        for strategy in ("ft-all", "flex", "fast", "faster", "ft-fc", "ft-ss"):
            tuner = fit(strategy, args.epochs)
            row[strategy] = dict(seconds=tuner.fit_time_, selected=str(tuner.selected_unit_))
        one = fit("flex", 1)
        row["flex, 1 epoch per candidate"] = dict(seconds=one.fit_time_,
                                                  selected=str(one.selected_unit_))
        # the marginal cost of an ft-all epoch (training + validation), fixed costs removed
        t1, t3 = (statistics.median(fit("ft-all", e).fit_time_ for _ in range(args.repeats))
                  for e in (1, 3))
        row["ft-all marginal epoch"] = dict(seconds=(t3 - t1) / 2, selected="all")
        results[config] = row
    record["flexsk"] = results
    lines.append(f"flexsk wall time per fit, max_epochs={args.epochs}, patience off, "
                 f"validation on {args.n_val} images every epoch, including data transfer:\n")
    lines.append("| strategy | " + " | ".join(configs) + " |\n|---|" + "---|" * len(configs))
    for strategy in results["fp32"]:
        cells = [f"{results[c][strategy]['seconds']:.2f} s ({results[c][strategy]['selected']})"
                 for c in configs]
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    ft_all = {c: results[c]["ft-all marginal epoch"]["seconds"] for c in configs}
    lines.append("\nRatios (same machine, same run):\n")
    for c in configs:
        flex_ratio = results[c]['flex, 1 epoch per candidate']['seconds'] / uncached_flex_epoch
        lines.append(f"- {c}: flexsk flex (1 epoch per candidate) / hand-written uncached: "
                     f"{flex_ratio:.2f}; "
                     f"ft-all throughput {args.n_images / ft_all[c]:.0f} img/s (marginal epoch "
                     f"incl. validation) = {hand['fp32'] / ft_all[c]:.2f}x the hand-written "
                     f"fp32 loop")
    text = "\n".join(lines)
    print(text)
    with open(args.out, "w") as f:
        f.write(text + "\n")
    with open(args.out.rsplit(".", 1)[0] + ".json", "w") as f:
        json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()

"""flexsk's performance suite: ratios measured side by side in one process.

Not part of the test suite. Every contender trains the same epochs with
early stopping off (``patience=None``), and each timing is the median of
``--repeats`` runs. The reference is a hand-written PyTorch exhaustive
search: L + 1 trainings of the full network with frozen parameters, no
caching, with the same seeds, so it must select the same unit as flex.

    python benchmarks/perf.py                 # table 1 (ratios) and table 2 (scaling)
    python benchmarks/perf.py --table ratios  # table 1 only
    python benchmarks/perf.py --device cuda   # on a GPU

Prints markdown tables.
"""

import argparse
import copy
import statistics
import time
from collections import OrderedDict

import numpy as np
import torch
from joblib import parallel_config
from torch import nn

from flexsk import FlexTuner
from flexsk.bench import format_table as table
from flexsk.datasets import make_digits_shift
from flexsk.strategies import Outcome, seed_for
from flexsk.zoo import load_source_net

BASE_SEED_STATE = 0


# -- data -------------------------------------------------------------------------------------


def jittered_target(n_per_class, *, image_size=16, n_channels=1, seed=0):
    """A blurred target: the 40-per-class train pool, enlarged with jittered copies.

    Copies are shifted by up to one pixel and get light noise, so the
    training set has ``n_per_class`` images per class.
    """
    bunch = make_digits_shift("blur", image_size=image_size, n_channels=n_channels,
                              random_state=0)
    rng = np.random.RandomState(seed)
    train = np.flatnonzero(bunch.split == "train")
    X_pool, y_pool = bunch.data[train], bunch.target[train]
    X, y = [], []
    for label in range(10):
        images = X_pool[y_pool == label]
        picks = np.arange(n_per_class) % len(images)
        for i, pick in enumerate(picks):
            image = images[pick]
            if i >= len(images):
                dy, dx = rng.randint(-1, 2, size=2)
                image = np.roll(image, (dy, dx), axis=(1, 2))
                image = np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1)
            X.append(image)
            y.append(label)
    val = bunch.split == "val"
    return (np.asarray(X, dtype=np.float32), np.asarray(y),
            bunch.data[val], bunch.target[val])


# -- the hand-written reference -------------------------------------------------------------


def plain_candidate(module, unit_names, X, y, X_val, y_val, *, epochs, lr, batch_size, seed,
                    channels_last=False):
    """Fine-tune units (None: all) of a copy of ``module``; best validation epoch.

    What a careful user writes by hand: frozen parameters, frozen modules in
    eval mode, Adam, a seeded shuffle, validation accuracy and loss after
    every epoch, the best weights kept (higher accuracy, or the same accuracy
    and a loss lower by a relative 1e-4, as flexsk ranks). The full network
    runs forward on every batch. With ``channels_last``, the module and the
    images use that memory format. Returns the module and its (accuracy, loss).
    """
    module = copy.deepcopy(module)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
        X, X_val = (t.contiguous(memory_format=torch.channels_last) for t in (X, X_val))
    owned = (lambda name: True) if unit_names is None else (
        lambda name: any(name.startswith(u + ".") for u in unit_names))
    params = []
    for name, p in module.named_parameters():
        p.requires_grad_(owned(name))
        if p.requires_grad:
            params.append(p)
    submodules = dict(module.named_modules())

    def train_mode():
        if unit_names is None:
            module.train()
        else:
            module.eval()
            for u in unit_names:
                submodules[u].train()

    criterion = nn.CrossEntropyLoss()

    def evaluate():
        module.eval()
        correct, loss = 0, 0.0
        with torch.no_grad():
            for i in range(0, len(X_val), 1024):
                outputs = module(X_val[i:i + 1024])
                correct += (outputs.argmax(1) == y_val[i:i + 1024]).sum().item()
                loss += criterion(outputs, y_val[i:i + 1024]).item() * len(outputs)
        return correct / len(X_val), loss / len(X_val)

    def better(new, old):
        return new[0] > old[0] or (new[0] == old[0] and new[1] < old[1] - 1e-4 * abs(old[1]))

    optimizer = torch.optim.Adam(params, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    best, best_state = evaluate(), copy.deepcopy(module.state_dict())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(epochs):
            train_mode()
            order = torch.randperm(len(X), generator=generator).to(X.device)
            for start in range(0, len(X), batch_size):
                idx = order[start:start + batch_size]
                optimizer.zero_grad(set_to_none=True)
                criterion(module(X[idx]), y[idx]).backward()
                optimizer.step()
            score = evaluate()
            if better(score, best):
                best, best_state = score, copy.deepcopy(module.state_dict())
    module.load_state_dict(best_state)
    return module, best


def plain_exhaustive(module, units, data, *, epochs, lr, batch_size, base_seed,
                     channels_last=False):
    """Algorithm 1 by hand: every unit, then all; the best validation accuracy, then loss,
    wins (the first on full ties)."""
    scores = {}
    keys = units + ["all"]
    for unit in keys:
        _, scores[unit] = plain_candidate(
            module, None if unit == "all" else [unit], *data, epochs=epochs, lr=lr,
            batch_size=batch_size, seed=seed_for(base_seed, unit), channels_last=channels_last)
    return min(keys, key=lambda k: (-scores[k][0], scores[k][1], keys.index(k))), scores


def plain_proxies(module, donor, units, X_val, y_val):
    """L proxy nets, each scored with its own full validation pass."""
    scores = {}
    for unit in units:
        proxy = copy.deepcopy(module)
        state = {k: v for k, v in donor.state_dict().items() if k.startswith(unit + ".")}
        proxy.load_state_dict(state, strict=False)
        proxy.eval()
        with torch.no_grad():
            scores[unit] = (proxy(X_val).argmax(1) == y_val).sum().item() / len(y_val)
    return scores


# -- timing -------------------------------------------------------------------------------------


def median_time(fn, repeats, sync):
    times, result = [], None
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        result = fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def deep_net(n_units, *, n_channels=1, width=16):
    """A zoo-style chain of ``n_units``: conv blocks with BatchNorm, then fc1, fc2."""
    layers, channels = OrderedDict(), n_channels
    n_conv = n_units - 2
    pools = {n_conv // 3, (2 * n_conv) // 3, n_conv - 1}
    for i in range(n_conv):
        block = [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        if i in pools:
            block.append(nn.MaxPool2d(2))
        layers[f"conv{i + 1}"] = nn.Sequential(*block)
        channels = width
    size = 16 // 2 ** len(pools)
    layers["flatten"] = nn.Flatten()
    layers["fc1"] = nn.Sequential(nn.Linear(width * size * size, 64), nn.ReLU())
    layers["fc2"] = nn.Linear(64, 10)
    return nn.Sequential(layers)


class Bench:
    def __init__(self, args):
        self.args = args
        self.device = torch.device(args.device)
        self.sync = (torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None))

    def tuner(self, net, **params):
        """The selection alone (refit=False) unless ``refit`` is given."""
        params = {"refit": False, **params}
        return FlexTuner(net, max_epochs=self.args.epochs, patience=None,
                         random_state=BASE_SEED_STATE, **params)

    def timed_fit(self, net, data, **params):
        X, y, X_val, y_val = data
        return median_time(lambda: self.tuner(net, **params).fit(X, y, X_val=X_val, y_val=y_val),
                           self.args.repeats, self.sync)

    def tensors(self, data):
        X, y, X_val, y_val = data
        return tuple(torch.as_tensor(a, device=self.device) for a in (X, y, X_val, y_val))

    def ratios(self):
        args = self.args
        net = load_source_net("conv7")
        net.set_params(device=args.device)
        net.initialize()
        data = jittered_target(args.n_per_class)
        base_seed = int(np.random.RandomState(BASE_SEED_STATE).randint(2 ** 31 - 1))
        module = net.module_
        units = [n for n, c in module.named_children() if any(True for _ in c.parameters())]
        tensors = self.tensors(data)
        hyper = dict(epochs=args.epochs, lr=net.lr, batch_size=net.batch_size,
                     base_seed=base_seed)

        t_plain, (plain_pick, plain_scores) = median_time(
            lambda: plain_exhaustive(module, units, tensors, **hyper), args.repeats, self.sync)
        t_flex, flex = self.timed_fit(net, data, strategy="flex")
        # channels-last memory format, for flexsk and for the hand-written search
        t_plain_cl, (plain_cl_pick, _) = median_time(
            lambda: plain_exhaustive(module, units, tensors, channels_last=True, **hyper),
            args.repeats, self.sync)
        t_flex_cl, flex_cl = self.timed_fit(net, data, strategy="flex", channels_last=True)
        t_flex_nocache, flex_nocache = self.timed_fit(net, data, strategy="flex",
                                                      activation_cache=False)
        with parallel_config(backend="loky", inner_max_num_threads=args.threads):
            t_flex_jobs, flex_jobs = self.timed_fit(net, data, strategy="flex", n_jobs=2)
        t_fast, _ = self.timed_fit(net, data, strategy="fast")
        t_faster, _ = self.timed_fit(net, data, strategy="faster")
        t_flex_refit, _ = self.timed_fit(net, data, strategy="flex", refit=True)
        t_fast_refit, _ = self.timed_fit(net, data, strategy="fast", refit=True)

        # one candidate: flexsk's loop against the hand-written one (ft-all, no cache)
        t_plain_all, _ = median_time(
            lambda: plain_candidate(module, None, *tensors, epochs=args.epochs, lr=net.lr,
                                    batch_size=net.batch_size, seed=seed_for(base_seed, "all")),
            args.repeats, self.sync)
        t_all, _ = self.timed_fit(net, data, strategy="ft-all")

        # proxies: shared prefix against L full validation passes
        ft = self._fine_tuning(net, data)
        donor = self.tuner(net, strategy="ft-all").fit(
            data[0], data[1], X_val=data[2], y_val=data[3]).net_.module_
        t_proxy_plain, plain_proxy = median_time(
            lambda: plain_proxies(module, donor, units, tensors[2], tensors[3]),
            max(args.repeats, 15), self.sync)
        t_proxy, proxy = median_time(
            lambda: {k: e.accuracy for k, e in ft.proxy_evaluations(donor).items()},
            max(args.repeats, 15), self.sync)
        cache_mib = max(sum(s.X.element_size() * s.X.numel() for s in ft.cache.inputs(u))
                        for u in units if u in ft.cache.cuts) / 2 ** 20

        same = plain_pick == flex.selected_unit_ == flex_nocache.selected_unit_ \
            == flex_jobs.selected_unit_
        rows = [
            ("flex / plain-PyTorch exhaustive", f"{t_flex / t_plain:.2f}", "≤ 0.60",
             f"{t_flex:.2f} s vs {t_plain:.2f} s; picks {flex.selected_unit_} / {plain_pick}"),
            ("flex (channels_last) / plain-PyTorch exhaustive", f"{t_flex_cl / t_plain:.2f}",
             "≤ 0.60", f"{t_flex_cl:.2f} s; picks {flex_cl.selected_unit_} / {plain_pick}"),
            ("flex (channels_last) / plain exhaustive (channels_last)",
             f"{t_flex_cl / t_plain_cl:.2f}", "",
             f"{t_flex_cl:.2f} s vs {t_plain_cl:.2f} s; picks {flex_cl.selected_unit_} / "
             f"{plain_cl_pick}"),
            ("fast / flex", f"{t_fast / t_flex:.2f}", "≤ 0.50", f"{t_fast:.2f} s"),
            ("faster / flex", f"{t_faster / t_flex:.2f}", "≤ 0.25", f"{t_faster:.2f} s"),
            ("flex with refit / without", f"{t_flex_refit / t_flex:.2f}", "",
             f"{t_flex_refit:.2f} s"),
            ("fast with refit / without", f"{t_fast_refit / t_fast:.2f}", "",
             f"{t_fast_refit:.2f} s"),
            ("L shared-prefix proxies / L full passes", f"{t_proxy / t_proxy_plain:.2f}",
             "≤ 0.70", f"{1000 * t_proxy:.1f} ms vs {1000 * t_proxy_plain:.1f} ms; "
             f"same scores: {proxy == plain_proxy}"),
            ("ft-all: flexsk loop / hand-written loop", f"{t_all / t_plain_all:.2f}", "≤ 1.15",
             f"{t_all:.2f} s vs {t_plain_all:.2f} s ({args.epochs} epochs)"),
            ("flex cache on / off", f"{t_flex / t_flex_nocache:.2f}", "",
             f"{t_flex_nocache:.2f} s off; cache peak {cache_mib:.2f} MiB"),
            ("flex n_jobs=2 / n_jobs=1", f"{t_flex_jobs / t_flex:.2f}", "",
             f"{t_flex_jobs:.2f} s (loky, {args.threads} thread(s) per worker)"),
        ]
        print(f"\n### Ratios: conv7 (7 units), {len(data[0])} training images "
              f"({args.n_per_class} per class), {len(data[2])} validation, {args.epochs} "
              f"epochs per run, patience off, refit off unless stated, median of "
              f"{args.repeats}, device {args.device}, torch threads {torch.get_num_threads()}\n")
        print(table(["ratio", "measured", "goal", "detail"], rows))
        print(f"\nSame selected unit for plain, flex, flex without cache, flex n_jobs=2: {same}")
        return rows

    def _fine_tuning(self, net, data):
        """The training context a fit builds (pretrained net, data, cuts), for proxy
        timings: a strategy of our own receives it, and tunes the last unit."""
        seen = {}

        def capture(ctx):
            seen["ft"] = ctx
            last = ctx.units[-1].name
            return Outcome(last, {last: ctx.tune(last)})

        tuner = FlexTuner(net, strategy=capture, max_epochs=1, refit=False,
                          random_state=BASE_SEED_STATE)
        tuner.fit(data[0], data[1], X_val=data[2], y_val=data[3])
        return seen["ft"]

    def scaling(self):
        args = self.args
        rows = []
        for n_units in (7, 13, 25):
            torch.manual_seed(0)
            from skorch import NeuralNetClassifier

            net = NeuralNetClassifier(deep_net(n_units), criterion=nn.CrossEntropyLoss,
                                      optimizer=torch.optim.Adam, lr=1e-3, batch_size=32,
                                      device=args.device).initialize()
            rows.append(self._scaling_row(f"{n_units} units", net, 100))
        net = load_source_net("conv7")
        net.set_params(device=args.device)
        net.initialize()
        for n_per_class in (50, 100, 200):
            rows.append(self._scaling_row(f"conv7, {n_per_class}/class", net, n_per_class))
        print(f"\n### Scaling: seconds per fit, {args.epochs} epochs per run, median of "
              f"{args.repeats}\n")
        print(table(["setting", "plain exhaustive", "flex", "fast", "faster", "flex/plain"],
                    rows))
        return rows

    def _scaling_row(self, label, net, n_per_class):
        args = self.args
        data = jittered_target(n_per_class)
        module = net.module_
        units = [n for n, c in module.named_children() if any(True for _ in c.parameters())]
        base_seed = int(np.random.RandomState(BASE_SEED_STATE).randint(2 ** 31 - 1))
        t_plain, _ = median_time(lambda: plain_exhaustive(
            module, units, self.tensors(data), epochs=args.epochs, lr=net.lr,
            batch_size=net.batch_size, base_seed=base_seed), args.repeats, self.sync)
        times = [self.timed_fit(net, data, strategy=s)[0] for s in ("flex", "fast", "faster")]
        return (label, f"{t_plain:.2f}", *(f"{t:.2f}" for t in times),
                f"{times[0] / t_plain:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", choices=["ratios", "scaling", "all"], default="all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--n-per-class", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: stable on a shared 2-core machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bench = Bench(args)
    if args.table in ("ratios", "all"):
        bench.ratios()
    if args.table in ("scaling", "all"):
        bench.scaling()


if __name__ == "__main__":
    main()

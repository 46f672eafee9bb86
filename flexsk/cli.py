"""The ``flexsk`` command line: ``flexsk demo`` (the main job) and ``flexsk bench``."""

import argparse
import sys
import time

import numpy as np

__all__ = ["main"]

#: Strategies the demo compares, as (label, FlexTuner parameters).
DEMO_STRATEGIES = [
    ("flex", dict(strategy="flex")),
    ("fast", dict(strategy="fast")),
    ("faster", dict(strategy="faster")),
    ("ft-fc (1)", dict(strategy="ft-fc", n_fc_units=1)),
    ("ft-fc (2)", dict(strategy="ft-fc", n_fc_units=2)),
    ("ft-ss", dict(strategy="ft-ss")),
    ("ft-all", dict(strategy="ft-all")),
]


def format_table(headers, rows):
    """A plain-text table with aligned columns (markdown compatible)."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _describe_unit(selected):
    return "+".join(selected) if isinstance(selected, tuple) else str(selected)


def int_at_least(minimum, *, multiple_of=1, at_most=None):
    """An argparse ``type``: an integer >= ``minimum`` (a multiple of, at most ...)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or value % multiple_of or (at_most is not None and value > at_most):
            wanted = f"an integer >= {minimum}"
            if multiple_of > 1:
                wanted += f" and a multiple of {multiple_of}"
            if at_most is not None:
                wanted += f" and <= {at_most}"
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
        return value
    parse.__name__ = "integer"
    return parse


def demo(args):
    """Pretrain (or load) a zoo net, shift the digits, and compare every strategy."""
    from tqdm.auto import tqdm

    from . import FlexTuner
    from .datasets import make_digits_shift, subsample_per_class
    from .zoo import load_source_net

    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    net = load_source_net(args.arch, image_size=args.image_size, verbose=1)
    bunch = make_digits_shift(args.shift, image_size=args.image_size,
                              random_state=args.random_state)
    pool = np.flatnonzero(bunch.split == "train")
    train = pool[subsample_per_class(bunch.target[pool], args.n_per_class,
                                     random_state=args.random_state)]
    val, test = (np.flatnonzero(bunch.split == s) for s in ("val", "test"))
    X, y = bunch.data, bunch.target
    source_accuracy = float(np.mean(net.predict(X[test]) == y[test]))
    print(f"Source net {args.arch} ({args.image_size}px) on the {args.shift!r} target: "
          f"test accuracy {source_accuracy:.3f} before tuning.")
    print(f"Target: {len(train)} training images ({args.n_per_class} per class), "
          f"{len(val)} validation, {len(test)} test.")

    rows = []
    for label, params in tqdm(DEMO_STRATEGIES, desc="strategies", unit="strategy",
                              disable=args.quiet):
        tuner = FlexTuner(net, max_epochs=args.max_epochs, patience=args.patience,
                          random_state=args.random_state, **params)
        tuner.fit(X[train], y[train], X_val=X[val], y_val=y[val])
        rows.append((label, f"{tuner.score(X[test], y[test]):.3f}",
                     _describe_unit(tuner.selected_unit_), f"{tuner.fit_time_:.1f}"))
    print()
    print(format_table(["strategy", "test accuracy", "selected unit", "fit seconds"], rows))
    print(f"\n(source net before tuning: {source_accuracy:.3f}; units: "
          f"{', '.join(tuner.units_)}; total {time.perf_counter() - started:.1f} s)")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="flexsk", description="Flex-tuning for scikit-learn: choose which unit of a "
        "pretrained network to fine-tune.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"flexsk {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    from .datasets import SHIFTS, SPLIT_SIZES
    from .zoo import ARCHS

    p = commands.add_parser("demo", help="compare every strategy on embedded data "
                            "(no downloads)")
    p.add_argument("--arch", choices=ARCHS, default="conv7", help="zoo net (default: conv7)")
    p.add_argument("--shift", choices=[s for s in SHIFTS if s not in ("mnistm", "colorspace")],
                   default="rotation", help="target domain shift (default: rotation)")
    pool = SPLIT_SIZES["target_train"]
    p.add_argument("--n-per-class", type=int_at_least(1, at_most=pool), default=2,
                   help=f"training images per class, 1 to {pool} (default: 2; the validation "
                   "set is the fixed 20 per class)")
    p.add_argument("--image-size", type=int_at_least(8, multiple_of=8), default=16,
                   help="image side, a multiple of 8 (default: 16)")
    p.add_argument("--max-epochs", type=int_at_least(1), default=100, help="default: 100")
    p.add_argument("--patience", type=int_at_least(1), default=10,
                   help="default: 10 (as flexsk bench: with 2 images per class an epoch is "
                   "one step)")
    p.add_argument("--random-state", type=int, default=0, help="default: 0")
    p.add_argument("--threads", type=int_at_least(1), default=1,
                   help="torch threads (default: 1, the fastest for these small nets and "
                   "robust on a busy machine)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=demo)

    from . import bench

    p = commands.add_parser("bench", help="run the paper's benchmark grid (resumable) and "
                            "write its tables and figures")
    bench.configure_parser(p)
    p.set_defaults(func=bench.main)
    return parser


def main(argv=None):
    """Entry point of the ``flexsk`` console script."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

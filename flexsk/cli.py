"""The ``flexsk`` command line: ``flexsk demo`` (the main job) and ``flexsk bench``.

Only argument parsing and exit codes live here, on top of :mod:`flexsk._demo`,
:mod:`flexsk.bench` and :mod:`flexsk.plot`; nothing in flexsk imports this
module.
"""

import argparse
import sys
import time
from pathlib import Path

from . import __version__
from ._demo import run_demo
from .bench import (DEFAULT_OUTPUT, DEFAULTS, QUICK_OUTPUT, RESULTS_CSV, STRATEGIES,
                    BenchError, make_config, run_bench, write_reports)
from .datasets import COLOUR_SHIFTS, SHIFTS, SPLIT_SIZES
from .plot import write_figures
from .zoo import ARCHS

__all__ = ["main"]

ESTIMATOR_DEFAULT = "default: the estimator's (FlexTuner's)"


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


# ----------------------------------------------------------------------------
# flexsk demo
# ----------------------------------------------------------------------------

def _configure_demo(parser):
    parser.add_argument("--arch", choices=ARCHS, default="conv7",
                        help="zoo net (default: conv7)")
    parser.add_argument("--shift", choices=[s for s in SHIFTS if s not in COLOUR_SHIFTS],
                        default="rotation", help="target domain shift (default: rotation)")
    pool = SPLIT_SIZES["target_train"]
    parser.add_argument("--n-per-class", type=int_at_least(1, at_most=pool), default=2,
                        help=f"training images per class, 1 to {pool} (default: 2; the "
                        "validation set is the fixed 20 per class)")
    parser.add_argument("--image-size", type=int_at_least(8, multiple_of=8), default=16,
                        help="image side, a multiple of 8 (default: 16)")
    parser.add_argument("--max-epochs", type=int_at_least(1), default=None,
                        help=ESTIMATOR_DEFAULT)
    parser.add_argument("--patience", type=int_at_least(1), default=None,
                        help=ESTIMATOR_DEFAULT)
    parser.add_argument("--random-state", type=int, default=0, help="default: 0")
    parser.add_argument("--threads", type=int_at_least(1), default=1,
                        help="torch threads (default: 1, the fastest for these small nets and "
                        "robust on a busy machine)")
    parser.add_argument("--jobs", type=int_at_least(1), default=None,
                        help="strategies fitted at once, each in a process of its own (default: "
                        "one per --threads cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=demo)


def demo(args):
    """``flexsk demo``: every strategy on one shifted target."""
    run_demo(arch=args.arch, shift=args.shift, n_per_class=args.n_per_class,
             image_size=args.image_size, max_epochs=args.max_epochs, patience=args.patience,
             random_state=args.random_state, threads=args.threads, jobs=args.jobs,
             progress=not args.quiet)
    return 0


# ----------------------------------------------------------------------------
# flexsk bench
# ----------------------------------------------------------------------------

def _words(values):
    """``--shifts blur,noise rotation`` -> ["blur", "noise", "rotation"]."""
    if values is None:
        return None
    return [w for v in values for w in v.split(",") if w]


def _parse_repeats(text):
    """``"5"`` -> 5; ``"2:5,10:3"`` -> {2: 5, 10: 3}."""
    if text is None:
        return None
    try:
        if ":" not in text:
            return int(text)
        pairs = [item.split(":") for item in text.split(",") if item]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError
        return {int(r): int(n) for r, n in pairs}
    except ValueError:
        raise BenchError(f"--repeats takes N or RATIO:N,RATIO:N,... (e.g. 5 or 2:5,10:2), "
                         f"got {text!r}.") from None


def _configure_bench(parser):
    parser.description = (
        "Run the grid of source nets x shifts x ratios x strategies x repeats, appending "
        "one CSV row per run (resumable), then write Table 3 / Table 4 style markdown "
        "tables and Figure 1 / Figure 2 style PNGs into the output directory.")
    parser.add_argument("--output", metavar="DIR", default=None,
                        help=f"results directory (default: {DEFAULT_OUTPUT}/, with --quick "
                        f"{QUICK_OUTPUT}/)")
    parser.add_argument("--nets", nargs="+", metavar="NET", default=None,
                        help=f"zoo nets, from {', '.join(ARCHS)} (default: both)")
    parser.add_argument("--shifts", nargs="+", metavar="SHIFT", default=None,
                        help=f"shifts, from {', '.join(SHIFTS)} (default: all)")
    parser.add_argument("--ratios", nargs="+", type=int, metavar="N", default=None,
                        help="training images per class (default: 2 10 40)")
    parser.add_argument("--repeats", default=None, metavar="N|R:N,...",
                        help="repeats of the scarcest ratio (default: 5), or per ratio, "
                        "e.g. 2:5,10:2")
    parser.add_argument("--other-repeats", type=int, default=None, metavar="N",
                        help="repeats of the other ratios (default: 1)")
    parser.add_argument("--strategies", nargs="+", metavar="S", default=None,
                        help=f"strategies, from {', '.join(STRATEGIES)} (default: all)")
    parser.add_argument("--max-epochs", type=int, default=None, help=ESTIMATOR_DEFAULT)
    parser.add_argument("--patience", type=int, default=None, help=ESTIMATOR_DEFAULT)
    parser.add_argument("--image-size", type=int, default=None,
                        help=f"image side, a multiple of 8 (default: {DEFAULTS['image_size']})")
    parser.add_argument("--scoring", default=None, metavar="SCORER",
                        help="what selection ranks by: a scikit-learn scorer name "
                        "(balanced_accuracy, f1_macro, ...) or map@10, retrieval against the "
                        "source gallery (default: validation accuracy)")
    parser.add_argument("--threads", type=int_at_least(1), default=1,
                        help="torch intra-op threads (default: 1, the fastest on a shared "
                        "machine)")
    parser.add_argument("--quick", action="store_true",
                        help="a small grid (conv4; blur, rotation, mnistm; ratios 2 and 10; "
                        "2 repeats at ratio 2): about two minutes on 2 cores")
    parser.add_argument("--report-only", action="store_true",
                        help="only regenerate the tables and figures from the CSV")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=bench)


def bench(args):
    """``flexsk bench``: run (or resume) the grid, then write the reports.

    Exit codes: 0 done, 2 refused (bad option, busy or damaged output
    directory; one line on stderr), 130 interrupted (finished runs kept).
    """
    output = Path(args.output or (QUICK_OUTPUT if args.quick else DEFAULT_OUTPUT))
    try:
        if not args.report_only:
            try:
                config = make_config(
                    nets=_words(args.nets), shifts=_words(args.shifts), ratios=args.ratios,
                    repeats=_parse_repeats(args.repeats), other_repeats=args.other_repeats,
                    strategies=_words(args.strategies), max_epochs=args.max_epochs,
                    patience=args.patience, image_size=args.image_size, quick=args.quick,
                    scoring=args.scoring)
            except ValueError as exc:
                raise BenchError(str(exc)) from exc
            started = time.perf_counter()
            try:
                run_bench(config, output, threads=args.threads, progress=not args.quiet)
            except KeyboardInterrupt:
                print(f"\nInterrupted: every finished run is saved in {output / RESULTS_CSV}; "
                      f"rerun the same command to resume.", file=sys.stderr)
                return 130
            print(f"Wall time of this session: {time.perf_counter() - started:.0f} s.")
        write_reports(output)
        try:
            write_figures(output)
        except ImportError as exc:  # matplotlib is optional; the message says how to get it
            print(f"Figures skipped: {exc}")
    except (BenchError, OSError) as exc:
        print(f"flexsk bench: error: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="flexsk", description="Flex-tuning for scikit-learn: choose which unit of a "
        "pretrained network to fine-tune.")
    parser.add_argument("--version", action="version", version=f"flexsk {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _configure_demo(commands.add_parser(
        "demo", help="compare every strategy on embedded data (no downloads)"))
    _configure_bench(commands.add_parser(
        "bench", help="run the paper's benchmark grid (resumable) and write its tables and "
        "figures"))
    return parser


def main(argv=None):
    """Entry point of the ``flexsk`` console script."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

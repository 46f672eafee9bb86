"""The full ``flexsk bench`` grid in parallel shards on a many-core machine, then merged.

Each (net, shift, ratio) is a shard: its own results directory, run by one
process with one torch thread, as ``flexsk bench`` runs the grid. Shards run
``--jobs`` at a time, the slowest first (conv7, then ratio 40 before 10 before
2). The rows of every shard are merged, in the grid's order, into one
``results.csv`` beside the full grid's ``config.json``; ``flexsk bench
--report-only --output DIR`` then writes the tables and figures. Rows already
in ``DIR/results.csv`` are kept (a resumed grid skips them), and a shard
stopped by ``--deadline`` keeps the rows it finished, so a second call
finishes the grid.

The fit times a shard records are those of one process among ``--jobs``
concurrent ones on that machine.

Usage::

    python benchmarks/bench_shards.py --output DIR [--jobs 16] [--deadline SECONDS]
"""

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from flexsk.bench import appending, make_config, plan_runs, read_results, run_key, write_config


def shards(config):
    """(net, shift, ratio) -> the number of runs, slowest shards first."""
    counts = {}
    for run in plan_runs(config):
        key = (run["net"], run["shift"], run["ratio"])
        counts[key] = counts.get(key, 0) + 1
    return sorted(counts, key=lambda k: (k[0] != "conv7", -k[2], k[1]))


def run_shard(key, repeats, output, deadline):
    net, shift, ratio = key
    directory = output / "shards" / f"{net}-{shift}-{ratio}"
    directory.mkdir(parents=True, exist_ok=True)
    code = ("import sys; from flexsk.bench import make_config, run_bench; "
            f"run_bench(make_config(nets=[{net!r}], shifts=[{shift!r}], ratios=[{ratio}], "
            f"repeats={{{ratio}: {repeats}}}), {str(directory)!r}, progress=False, log=None)")
    left = deadline - time.monotonic()
    if left <= 0:
        return key, "not started"
    try:
        subprocess.run([sys.executable, "-c", code], check=True, timeout=left,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
        return key, "done"
    except subprocess.TimeoutExpired:
        return key, "stopped at the deadline"
    except subprocess.CalledProcessError as exc:
        return key, f"failed ({exc.returncode})"


def merge(config, output):
    """Every shard's rows and those already in output/results.csv, in the grid's order."""
    rows = {}
    for path in [output / "results.csv"] + sorted((output / "shards").glob("*/results.csv")):
        if path.exists():
            for row in read_results(path):
                rows.setdefault(run_key(row), row)
    order = {run_key(run): i for i, run in enumerate(plan_runs(config))}
    kept = sorted((r for k, r in rows.items() if k in order), key=lambda r: order[run_key(r)])
    merged = output / "results.csv.new"
    merged.unlink(missing_ok=True)
    with appending(merged) as write:
        for row in kept:
            write(row)
    merged.replace(output / "results.csv")
    write_config(output / "config.json", config)
    return len(kept), len(order)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds after which running shards stop (their finished rows "
                        "are kept)")
    args = parser.parse_args(argv)
    config = make_config()
    args.output.mkdir(parents=True, exist_ok=True)
    earlier = []
    if (args.output / "results.csv").exists():
        merge(config, args.output)  # earlier rows first, so that shards resume after them
        earlier = read_results(args.output / "results.csv")
    done = {run_key(r) for r in earlier}
    deadline = time.monotonic() + (args.deadline or float("inf"))
    todo = [key for key in shards(config)
            if any(run_key(run) not in done for run in plan_runs(config)
                   if (run["net"], run["shift"], run["ratio"]) == key)]
    for key in todo:  # seed each shard with the rows it already has
        directory = args.output / "shards" / f"{key[0]}-{key[1]}-{key[2]}"
        directory.mkdir(parents=True, exist_ok=True)
        shard_config = make_config(nets=[key[0]], shifts=[key[1]], ratios=[key[2]],
                                   repeats={key[2]: config["repeats"][str(key[2])]})
        write_config(directory / "config.json", shard_config)
        existing = [r for r in earlier if (r["net"], r["shift"], r["ratio"]) == key]
        if existing and not (directory / "results.csv").exists():
            with appending(directory / "results.csv") as write:
                for row in existing:
                    write(row)
    started = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_shard, key, config["repeats"][str(key[2])], args.output,
                               deadline) for key in todo]
        for future in futures:
            key, status = future.result()
            print(f"{'-'.join(map(str, key))}: {status} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    n, total = merge(config, args.output)
    print(f"{n} of {total} runs in {args.output / 'results.csv'} "
          f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()

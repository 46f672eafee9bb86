"""Time and memory of :func:`flexsk.metrics.map_at_k` on a large random gallery.

Run ``python benchmarks/bench_retrieval.py`` (defaults: a gallery of 100,000
float32 embeddings of dimension 512 in 1,000 classes, 10,000 queries, k=10).

Embeddings are Gaussian clusters (unit-variance centres plus isotropic noise
of scale ``--noise``), so that mAP@k is neither 0 nor 1. Each metric is
measured in a fresh subprocess: it builds the data (in slices, to keep
transient memory small), reads its peak resident memory (``ru_maxrss``),
calls ``map_at_k`` ``--repeats`` times and reads the peak again. "Peak extra
MiB" is the difference: memory used by the computation on top of its inputs.
Times are medians of ``time.perf_counter`` durations. Nothing is asserted.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def clustered_embeddings(rng, labels, centers, noise, chunk=8192):
    """``centers[labels] + noise * N(0, 1)`` as float32, built slice by slice."""
    out = np.empty((len(labels), centers.shape[1]), dtype=np.float32)
    for start in range(0, len(labels), chunk):
        part = out[start:start + chunk]
        rng.standard_normal(part.shape, dtype=np.float32, out=part)
        part *= noise
        part += centers[labels[start:start + chunk]]
    return out


def make_data(args):
    rng = np.random.default_rng(args.seed)
    centers = rng.standard_normal((args.n_classes, args.dim), dtype=np.float32)
    gallery_labels = rng.permutation(np.arange(args.n_gallery) % args.n_classes)
    query_labels = rng.integers(0, args.n_classes, args.n_queries)
    gallery = clustered_embeddings(rng, gallery_labels, centers, args.noise)
    queries = clustered_embeddings(rng, query_labels, centers, args.noise)
    return queries, query_labels, gallery, gallery_labels


def max_rss_mib():
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def measure(args):
    """Child process: time one metric and report JSON on stdout."""
    import torch  # imported before the baseline, like the data

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from flexsk.metrics import map_at_k

    data = make_data(args)
    cuda = args.device.startswith("cuda")
    if args.device != "cpu":   # embeddings as tensors on the device, labels stay arrays
        data = (torch.from_numpy(data[0]).to(args.device), data[1],
                torch.from_numpy(data[2]).to(args.device), data[3])
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        device_before = torch.cuda.memory_allocated()
    before = max_rss_mib()
    times, cpu_times = [], []
    for _ in range(args.repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        value = map_at_k(*data, k=args.k, metric=args.child)   # a float: synchronises
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    extra = max_rss_mib() - before
    if cuda:   # peak extra memory on the device rather than on the host
        extra = (torch.cuda.max_memory_allocated() - device_before) / 2**20
    print(json.dumps({"times": times, "cpu_times": cpu_times, "extra_mib": extra,
                      "baseline_mib": before,
                      "map": value}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-gallery", type=int, default=100_000)
    parser.add_argument("--n-queries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-classes", type=int, default=1_000)
    parser.add_argument("--noise", type=float, default=2.5,
                        help="noise scale around the unit-variance class centres")
    parser.add_argument("--metrics", nargs="+", default=["euclidean", "cosine"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu",
                        help="torch device of the embeddings (peak extra memory is then "
                             "measured on that device for CUDA)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return measure(args)

    import torch
    print(f"gallery {args.n_gallery:,} x {args.dim} float32 ({args.n_classes:,} classes), "
          f"{args.n_queries:,} queries, k={args.k}, median of {args.repeats}; "
          f"torch {torch.__version__}, device {args.device}, "
          f"{torch.get_num_threads()} threads\n")
    rows = []
    for metric in args.metrics:
        command = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]),
                   "--child", metric]
        child = subprocess.run(command, capture_output=True, text=True)
        if child.returncode:
            sys.exit(f"measuring {metric} failed:\n{child.stderr}")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append((metric, statistics.median(result["times"]),
                     statistics.median(result["cpu_times"]), result["extra_mib"],
                     result["map"], result["baseline_mib"]))
    print("| metric | median s | median CPU s | peak extra MiB | mAP@k |")
    print("|---|---:|---:|---:|---:|")
    for metric, seconds, cpu_seconds, extra, value, _ in rows:
        print(f"| {metric} | {seconds:.2f} | {cpu_seconds:.2f} | {extra:.0f} | {value:.4f} |")
    print(f"\n(peak RSS before the calls, inputs included: {rows[0][5]:.0f} MiB; CPU s is "
          "process time over all threads: wall time on idle cores is about CPU s / threads)")


if __name__ == "__main__":
    main()

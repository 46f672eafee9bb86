"""Pickle size of a fitted FlexTuner against its network's weights.

Fits the zoo's conv4 and conv7 on the blur shift (40 images per class,
``random_state=0``) with ft-fc (one unit tuned) and flex (``refit=True`` and
``refit=False``), and prints the size of ``pickle.dumps(tuner)`` as a multiple
of the bytes of the network's parameters and buffers, beside the size of the
same state pickled without the lean form (every module in full)::

    python benchmarks/bench_pickle_size.py
"""

import pickle

from sklearn.base import BaseEstimator

from flexsk import FlexTuner
from flexsk.datasets import make_digits_shift
from flexsk.zoo import load_source_net


def main():
    X, y = make_digits_shift("blur", split="train", return_X_y=True)
    print("| net | strategy | refit | selected | weights (bytes) | pickle / weights "
          "| every module in full / weights |")
    print("|---|---|---|---|---|---|---|")
    for arch in ("conv4", "conv7"):
        net = load_source_net(arch)
        weights = sum(t.numel() * t.element_size()
                      for t in list(net.module_.parameters()) + list(net.module_.buffers()))
        for strategy, refit in (("ft-fc", True), ("flex", True), ("flex", False)):
            tuner = FlexTuner(net, strategy=strategy, refit=refit, random_state=0).fit(X, y)
            lean = len(pickle.dumps(tuner))
            full = len(pickle.dumps(BaseEstimator.__getstate__(tuner)))
            print(f"| {arch} | {strategy} | {refit} | {tuner.selected_unit_} | {weights} "
                  f"| {lean / weights:.2f} | {full / weights:.2f} |")


if __name__ == "__main__":
    main()

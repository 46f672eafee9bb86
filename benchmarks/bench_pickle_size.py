"""Pickle size of a fitted FlexTuner against its network's weights.

Fits zoo nets on the blur shift (40 images per class, ``random_state=0``,
``keep_candidates=False``) with ft-fc (one unit tuned) and flex
(``refit=True`` and ``refit=False``), with the pretrained head and with a
new one (``head="new"``, labels "even"/"odd"), and prints the size of
``pickle.dumps(tuner)`` as a multiple of the bytes of the network's
parameters and buffers, beside the size of the same state pickled without
the lean form (every module in full). The nets: conv4 and conv7 at 16 px
(grey), and conv7 at 32 px in colour, the larger::

    python benchmarks/bench_pickle_size.py
"""

import pickle

import numpy as np
from sklearn.base import BaseEstimator

from flexsk import FlexTuner
from flexsk.datasets import make_digits_shift
from flexsk.zoo import load_source_net

NETS = (("conv4", 16, 1), ("conv7", 16, 1), ("conv7", 32, 3))
FITS = (("ft-fc", True, "keep"), ("flex", True, "keep"), ("flex", False, "keep"),
        ("flex", True, "new"))


def main():
    print("| net | weights (bytes) | strategy | refit | head | selected | pickle / weights "
          "| every module in full / weights |")
    print("|---|---|---|---|---|---|---|---|")
    for arch, size, channels in NETS:
        net = load_source_net(arch, image_size=size, n_channels=channels)
        X, y = make_digits_shift("blur", split="train", image_size=size, n_channels=channels,
                                 return_X_y=True)
        weights = sum(t.numel() * t.element_size()
                      for t in list(net.module_.parameters()) + list(net.module_.buffers()))
        for strategy, refit, head in FITS:
            labels = y if head == "keep" else np.where(y % 2 == 0, "even", "odd")
            tuner = FlexTuner(net, strategy=strategy, refit=refit, head=head,
                              random_state=0).fit(X, labels)
            lean = len(pickle.dumps(tuner))
            full = len(pickle.dumps(BaseEstimator.__getstate__(tuner)))
            print(f"| {arch} {size} px, {channels} ch | {weights} | {strategy} | {refit} "
                  f"| {head} | {tuner.selected_unit_} | {lean / weights:.2f} "
                  f"| {full / weights:.2f} |", flush=True)


if __name__ == "__main__":
    main()

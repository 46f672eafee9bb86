"""FlexTuner inside scikit-learn's meta-estimators that re-encode ``y``.

``OneVsRestClassifier`` and ``OutputCodeClassifier`` fit one binary problem
per class (or code bit), with labels 0 and 1. Under ``head="auto"`` those
are read as outputs 0 and 1 of the pretrained head; ``head="new"`` gives
each binary problem a two-output head of its own. The setting: the zoo's
conv4 on the blur shift, 300 training images drawn from the train split
(``random_state=0``), ft-fc, tested on the test split, for ``max_epochs=3``
and the default ``"auto"``::

    python benchmarks/meta_estimators.py
"""

import time
import warnings

import numpy as np
import torch
from sklearn.multiclass import OneVsRestClassifier, OutputCodeClassifier

from flexsk import FlexTuner
from flexsk.datasets import make_digits_shift
from flexsk.zoo import load_source_net


def main():
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    net = load_source_net("conv4")
    X, y = make_digits_shift("blur", split="train", return_X_y=True)
    X_test, y_test = make_digits_shift("blur", split="test", return_X_y=True)
    chosen = np.random.RandomState(0).permutation(len(X))[:300]
    X, y = X[chosen], y[chosen]
    print("| max_epochs | head | FlexTuner alone | OneVsRestClassifier | OutputCodeClassifier |")
    print("|---|---|---|---|---|")
    for max_epochs in (3, "auto"):
        for head in ("auto", "new"):
            tuner = FlexTuner(net, strategy="ft-fc", max_epochs=max_epochs, head=head,
                              random_state=0)
            cells = []
            for model in (tuner, OneVsRestClassifier(tuner),
                          OutputCodeClassifier(tuner, random_state=0)):
                started = time.perf_counter()
                model.fit(X, y)
                cells.append(f"{model.score(X_test, y_test):.3f} "
                             f"({time.perf_counter() - started:.1f} s)")
            print(f"| {max_epochs} | {head} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

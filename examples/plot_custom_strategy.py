"""
==========================
Write your own strategy
==========================

A strategy is a short schedule over the training context that every fit
builds: ``ctx.tune`` trains a unit (or ``"all"``) until validation stops
making progress, ``ctx.proxy_evaluations`` scores the pretrained net with one
unit swapped in from another model. Here a new selection rule, in 10 lines,
runs next to flex and fast: a *one-epoch* ft-all donates its units, and the
proxy with the lowest validation *loss* (not accuracy) is tuned.
"""

# %%
# The rule
# --------
import torch

from flexsk import FlexTuner
from flexsk.datasets import make_digits_shift
from flexsk.strategies import Outcome, Strategy
from flexsk.zoo import load_source_net

torch.set_num_threads(1)


def lowest_proxy_loss(ctx):
    """One epoch of ft-all; tune the unit whose proxy net has the lowest loss."""
    one_epoch = ctx.stopping.replace(max_epochs=1, patience=None)
    donor = ctx.tune("all", stopping=one_epoch, keep_best=False)
    proxies = ctx.proxy_evaluations(donor.module)
    unit = min(proxies, key=lambda name: proxies[name].loss)
    return Outcome(unit, {unit: ctx.tune(unit)}, proxies, donor="all")


def two_runs(n_units):
    """Training runs it takes (for the progress bar): the donor and the unit."""
    return 2


# ``single_unit=True``: it ends on one unit, so ``max_units`` may grow it. Module-level
# functions (not lambdas) keep the tuner picklable.
lowest_loss = Strategy("lowest-loss", lowest_proxy_loss, n_runs=two_runs, single_unit=True)

# %%
# Against flex and fast
# ---------------------
# The same data, seed and defaults for the three; ``selected_unit_`` and the
# test accuracy of each.
net = load_source_net("conv4")
X, y = make_digits_shift("blur", split="train", return_X_y=True)
X_test, y_test = make_digits_shift("blur", split="test", return_X_y=True)

for strategy in ("flex", "fast", lowest_loss):
    tuner = FlexTuner(net, strategy=strategy, random_state=0).fit(X, y)
    name = strategy if isinstance(strategy, str) else strategy.name
    print(f"{name:12s} tuned {tuner.selected_unit_!r:8s} test accuracy "
          f"{tuner.score(X_test, y_test):.3f}  fit {tuner.fit_time_:.1f} s")

# %%
# Everything else comes with it
# -----------------------------
# The rule runs under cross-validated selection (every ``ctx`` call averages
# over the folds), with parallel runs and in a grid search, like the
# built-in strategies.
tuner = FlexTuner(net, strategy=lowest_loss, cv=3, n_jobs=2, random_state=0).fit(X, y)
print(f"cv=3: tuned {tuner.selected_unit_!r}, proxy losses "
      + ", ".join(f"{unit} {loss:.3f}" for unit, loss in tuner.proxy_losses_.items()))

# %%
# and it pickles, like any fitted tuner whose strategy is made of module-level functions
import pickle  # noqa: E402

restored = pickle.loads(pickle.dumps(tuner))
print(f"pickled and restored: the same predictions: "
      f"{(restored.predict(X_test) == tuner.predict(X_test)).all()}")

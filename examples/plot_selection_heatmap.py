"""
===================================================
Which unit each method picks (the paper's Figure 2)
===================================================

Across domain shifts and training-set sizes, is the unit that flex-tuning
picks from validation accuracy the one that tests best, and do the cheaper
fast and faster variants pick the same one? :mod:`flexsk.bench` runs a grid of
scenarios and writes one row per fit;
:func:`flexsk.plot.plot_selection_heatmap` draws the test-accuracy rank of
every unit in every scenario, with each method's picks on top.
"""

# %%
# A small benchmark grid
# ----------------------
# The 4-unit net on four shifts, with 2 and 10 training images per class,
# two repeats at 2 images per class. ``flexsk bench`` runs the full grid of
# the paper from the command line; here a small one runs in-process, into a
# temporary directory.
import tempfile
import textwrap

import matplotlib.pyplot as plt
import torch

from flexsk import bench
from flexsk.plot import UnitScoresDisplay, plot_selection_heatmap

torch.set_num_threads(1)

config = bench.make_config(
    nets=["conv4"],
    shifts=["blur", "noise", "rotation", "scaling"],
    ratios=[2, 10],
    repeats=2,
    other_repeats=1,
    strategies=["flex", "fast", "faster"],
    max_epochs=30,
    patience=3,
)
output = tempfile.mkdtemp(prefix="flexsk-bench-")
n_runs = bench.run_bench(config, output, progress=False, log=None)
rows = bench.read_results(output)
print(f"{n_runs} runs, one row each; the columns:")
print(textwrap.fill(", ".join(rows[0]), width=76))

# %%
# The heat map
# ------------
# One row per scenario (shift, images per class), one column per unit and
# ``all``. The background ranks each candidate of flex by its mean test
# accuracy (1 = best, darkest); triangles show what flex (left), fast
# (centre, its proxy choice even when it then returned ``all``) and faster
# (right) picked, sized by how many repeats picked it.
fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
plot_selection_heatmap(rows, ax=ax)

# %%
# The same rows also give Figure 1 for any one shift: the mean validation
# (solid) and test (dashed) accuracy of every flex candidate, one colour per
# training-set size (:class:`~flexsk.plot.UnitScoresDisplay`).
fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
UnitScoresDisplay.from_results(rows, shift="rotation", ax=ax)

# %%
# And the tables of ``flexsk bench``: mean test accuracy per scenario, with
# the source net's accuracy before tuning in parentheses.
print(bench.table3_markdown(rows))
print(bench.summary_line(rows))

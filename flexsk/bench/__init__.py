"""The benchmark of ``flexsk bench``: the paper's grid on embedded data, and its reports.

The grid is source nets x domain shifts x training-set sizes ("ratios",
images per class) x strategies x repeats, as in Section 5 of Royer &
Lampert (WACV 2020):

* source nets: the zoo's ``conv4`` (the paper's 4-unit MNIST net) and
  ``conv7`` (its 7-unit CIFAR net), one-channel for the grey shifts and
  three-channel for the colour shifts (:data:`flexsk.datasets.COLOUR_SHIFTS`);
* shifts: :data:`flexsk.datasets.SHIFTS`, each with its default parameters
  and ``random_state=0``;
* ratios 2, 10 and 40 images per class (40 is the whole training pool),
  drawn with :func:`~flexsk.datasets.train_val_test_split` and
  ``random_state=repeat``, so subsets are nested across ratios;
* strategies flex, fast, faster, ft-fc (1), ft-fc (2), ft-ss and ft-all,
  and the reference ``scratch`` (ft-all's training from re-initialized
  weights; :data:`REFERENCES`), each fitted with ``keep_candidates=True``
  and ``random_state=repeat`` on the fixed validation split, and scored on
  the fixed test split; ``max_epochs`` and ``patience`` are the estimator's
  defaults unless the configuration sets them.

Every run is one row of a tidy CSV (:data:`COLUMNS`), appended and flushed as
soon as it finishes. A restart reads the complete rows and skips them; a
line that is not a complete row is dropped, with a warning, and its run done
again. The grid's settings live in ``config.json`` next to the CSV, and a run
with other settings refuses to append to it. One process at a time writes a
directory: a second ``flexsk bench`` on it is refused.

:func:`write_reports` turns the CSV into the paper's tables (Table 3: mean
test accuracy per shift and ratio, Table 4: retrieval mAP@10) and a report on
the selection; :func:`flexsk.plot.write_figures` draws its figures (Figure 1:
per-unit validation and test accuracy; Figure 2: which unit each method
picks). ``flexsk bench`` writes both.

The package has one module per job, each importing only those before it:
``_config`` (the grid and ``config.json``), ``_results`` (the results
directory: the CSV's columns, reader and writer), ``_runner`` (the locked,
resumable runner), ``_tables`` (the markdown tables), ``_reports`` (the
report files) and ``_scripts`` (the resumable CSV of the measuring scripts
in ``benchmarks/``). Nothing here imports :mod:`flexsk.plot`, which reads results
through this package, or the command line, :mod:`flexsk.cli`.
"""

from ._config import (STRATEGIES, BenchConfigError, BenchError, make_config,  # noqa: F401
                      BENCH_VERSION, DEFAULT_OUTPUT, DEFAULTS, LABELS, MAP_K, QUICK,
                      QUICK_OUTPUT, RECIPES, REFERENCES, RETRIEVAL_SCORING, RETRIEVAL_STRATEGIES,
                      SHIFT_RANDOM_STATE,
                      describe_config,
                      n_channels_of, plan_runs, write_config)
from ._reports import write_reports
from .._text import format_table, key_name
from ._results import (COLUMNS, best_key, read_results,  # noqa: F401
                       CONFIG_JSON, KEY_COLUMNS, LOCK_FILE, RESULTS_CSV, TIMING_JSON,
                       appending, parse_row, run_key)
from ._runner import run_bench
from ._scripts import resumable_csv
from ._tables import (agreement_markdown, bold_cells, mean_accuracies,  # noqa: F401
                      mean_accuracy_markdown, picks_markdown, recipes_markdown, refit_markdown,
                      regret_markdown,
                      retrieval_markdown, scratch_markdown, selection_markdown,
                      summary_line,
                      table3_markdown, versus_baselines_markdown, win_counts,
                      win_counts_markdown,
                      BASELINES, FLEX_VARIANTS, PAPER_WINS, RECIPE_RIVALS, TIE_TOLERANCE)

# Besides __all__, the constants and helpers above stay importable from here,
# as they were before the bench became a package.
__all__ = [
    "COLUMNS",
    "STRATEGIES",
    "LABELS",
    "RECIPES",
    "REFERENCES",
    "DEFAULTS",
    "DEFAULT_OUTPUT",
    "QUICK_OUTPUT",
    "RESULTS_CSV",
    "BenchError",
    "BenchConfigError",
    "make_config",
    "plan_runs",
    "run_bench",
    "read_results",
    "parse_row",
    "format_table",
    "key_name",
    "best_key",
    "mean_accuracies",
    "bold_cells",
    "win_counts",
    "table3_markdown",
    "summary_line",
    "mean_accuracy_markdown",
    "versus_baselines_markdown",
    "win_counts_markdown",
    "picks_markdown",
    "selection_markdown",
    "retrieval_markdown",
    "regret_markdown",
    "agreement_markdown",
    "refit_markdown",
    "scratch_markdown",
    "recipes_markdown",
    "write_reports",
    "resumable_csv",
]

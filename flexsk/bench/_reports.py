"""The reports of a results directory: the markdown tables."""

import os
from pathlib import Path

from sklearn.utils._param_validation import validate_params

from .._files import atomic_write
from ._config import BenchError, describe_config, read_config
from ._results import CONFIG_JSON, RESULTS_CSV, describe_run, read_results, run_key
from ._tables import (BASELINES, TIE_TOLERANCE, agreement_markdown, label_of,
                      mean_accuracy_markdown, picks_markdown, recipes_markdown, refit_markdown,
                      regret_markdown, scratch_markdown,
                      retrieval_markdown, selection_markdown, summary_line,
                      table3_markdown, versus_baselines_markdown, win_counts_markdown)

__all__ = ["write_reports"]


def _silent(*args, **kwargs):
    pass


@validate_params(
    {"output": [str, os.PathLike], "log": [callable, None]},
    prefer_skip_nested_validation=True,
)
def write_reports(output, *, log=print):
    """Write the tables (markdown) of the results in ``output``.

    Files: ``table3.md`` (Table 3 style tables, the win-count summary and the
    mean accuracy per strategy), ``retrieval.md`` (Table 4 style),
    ``selection.md`` (flex's selection regret under the ranking rule and the
    former one, the seed-to-seed agreement of picks, refit's gain), each
    written all at once. Results made before the refit existed (no
    ``refit_test_accuracy``) get no ``selection.md``: one there is removed,
    since it would be stale, and a line logged says why. The figures
    (Figures 1 and 2 of the paper) are :func:`flexsk.plot.write_figures`'s;
    ``flexsk bench`` writes both.

    Parameters
    ----------
    output : str or path-like
        The directory of ``results.csv`` (and ``config.json``); the tables
        are written next to it.
    log : callable or None, default=print
        Called with the summary lines, and a line for a report not written;
        None is silent.

    Returns
    -------
    list of pathlib.Path
        The files written.

    Raises
    ------
    BenchError
        If ``output`` holds no finished runs, or a damaged ``config.json``.

    Examples
    --------
    The tables of the committed results, regenerated without training (as
    ``flexsk bench --report-only --output docs/_static/bench`` does, with the
    figures):

    >>> from flexsk.bench import write_reports
    >>> paths = write_reports("docs/_static/bench", log=None)  # doctest: +SKIP
    """
    log = log or _silent
    output = Path(output)
    csv_path = output / RESULTS_CSV
    if not csv_path.exists():
        raise BenchError(f"no results in {output}: {csv_path} does not exist. Run "
                         f"flexsk bench --output {output} first.")
    rows = read_results(csv_path)
    if not rows:
        raise BenchError(f"{csv_path} holds no finished runs yet.")
    config_path = output / CONFIG_JSON
    header = ""
    if config_path.exists():
        header = f"Grid: {describe_config(read_config(config_path))}\n\n"
    written = []

    table3 = (f"# Mean test accuracy (Table 3 style)\n\n{header}"
              "Mean test accuracy over repeats; in parentheses the source net's accuracy "
              "on the target test set before tuning. Bold: a flex variant strictly above "
              "every baseline (ft-fc (1), ft-fc (2), ft-ss, ft-all) in that row.\n\n"
              + table3_markdown(rows) + "\n" + summary_line(rows) + "\n\n"
              + mean_accuracy_markdown(rows) + "\n## Flex variants against the best "
              f"baseline\n\nPer scenario, the best of {', '.join(label_of(b) for b in BASELINES)}"
              f"; tied means within {TIE_TOLERANCE}.\n\n" + versus_baselines_markdown(rows)
              + "\n## Win counts per ratio\n\n"
              + win_counts_markdown(rows) + "\n## Selection against a test-set oracle\n\n"
              "The oracle returns, in each flex run, the candidate (one unit, or ft-all) "
              "with the best *test* accuracy; the regret of a method is the oracle's test "
              "accuracy minus its own (fast and faster are compared with the flex run of "
              "the same subset and seed).\n\n" + selection_markdown(rows)
              + "\n## Units flex returns\n\n" + picks_markdown(rows)
              + "\n## Fine-tuning against training from scratch\n\n'scratch' trains every "
              "parameter, as ft-all does, from re-initialized weights: a sanity reference, "
              "never counted among the winners.\n\n" + scratch_markdown(rows)
              + "\n## Flex against the recipes\n\nThe recipes practitioners use beside the "
              "paper's baselines: Auto-RGN (Lee et al., 2023), LP-FT (Kumar et al., 2022) "
              "and layer-wise learning-rate decay; means over repeats, then scenarios.\n\n"
              + recipes_markdown(rows))
    written.append(_write_text(output / "table3.md", table3))
    retrieval = (f"# Retrieval mAP@10 (Table 4 style)\n\n{header}"
                 "mAP@10 of the tuned net's penultimate features of the target test images, "
                 "queried against the source test images embedded by the pretrained net "
                 "(euclidean). 'pretrained': the target images embedded by the pretrained "
                 "net too. Bold: best tuned value of the row.\n\n" + retrieval_markdown(rows))
    written.append(_write_text(output / "retrieval.md", retrieval))
    no_refit = [r for r in rows if r.get("refit_test_accuracy") in (None, "")]
    if no_refit:
        log(_not_written(output / "selection.md", no_refit, len(rows), csv_path))
    else:
        selection = (
            f"# Selection: regret, agreement, ranking rules, refit\n\n{header}"
            "## Selection regret of flex\n\nPer scenario, the test accuracy of the best of "
            "flex's candidates in hindsight minus that of its pick, in points, averaged over "
            "repeats: under the rule flex uses (validation accuracy, then loss), and under the "
            "former rule (accuracy, then the earliest unit) replayed on the same candidates."
            "\n\n" + regret_markdown(rows)
            + "\n## Seed-to-seed agreement of the pick\n\nOver pairs of repeats of a "
            "scenario (other training subsets and seeds).\n\n" + agreement_markdown(rows)
            + "\n## Refit\n\nMean test accuracy over runs of the selection run's pick → of "
            "the returned model, refitted on the training and validation data (gain in "
            "points)."
            "\n\n" + refit_markdown(rows))
        written.append(_write_text(output / "selection.md", selection))
    log(summary_line(rows))
    log(mean_accuracy_markdown(rows))
    return written


def _not_written(path, no_refit, n_rows, csv_path):
    """Remove ``path``, a report these results cannot have; the line that says so."""
    try:
        path.unlink()
        stale = f"; the stale {path.name} there was removed"
    except FileNotFoundError:
        stale = ""
    return (f"{path.name} not written: {len(no_refit)} of the {n_rows} rows of {csv_path} "
            f"have no refit_test_accuracy (results made before the refit existed), e.g. "
            f"{describe_run(run_key(no_refit[0]))}{stale}.")


def _write_text(path, text):
    with atomic_write(path, text=True) as f:
        f.write(text)
    return path

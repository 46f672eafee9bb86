"""The markdown tables of the results: Table 3 and Table 4 styles, win counts, picks."""

from collections import Counter, defaultdict
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, validate_params

from .._ranking import ranked
from .._text import format_table
from ._config import LABELS, RECIPES, REFERENCES, RETRIEVAL_STRATEGIES, STRATEGIES
from ._results import parse_row, run_key

__all__ = ["FLEX_VARIANTS", "BASELINES", "TIE_TOLERANCE", "PAPER_WINS", "scenario_of", "label_of",
           "mean_accuracies", "bold_cells", "win_counts", "table3_markdown", "summary_line",
           "mean_accuracy_markdown", "versus_baselines_markdown", "picks_markdown",
           "win_counts_markdown", "selection_markdown", "retrieval_markdown", "regret_markdown",
           "agreement_markdown", "refit_markdown", "scratch_markdown", "recipes_markdown",
           "RECIPE_RIVALS"]

FLEX_VARIANTS = ("flex", "fast", "faster")
BASELINES = ("ft-fc-1", "ft-fc-2", "ft-ss", "ft-all")
#: Two mean accuracies within this of each other are tied (win counts).
TIE_TOLERANCE = 0.0005
#: The paper's Section 5.2 counts, for the summary line.
PAPER_WINS = "flex 60/72, fast-flex 41/72, ft-all 26/72"

_TOL = Interval(Real, 0, None, closed="left")
_DIGITS = Interval(Integral, 0, None, closed="left")


def scenario_of(row):
    """A row's scenario: ``(net, n_channels, shift, ratio)``."""
    return (row["net"], row["n_channels"], row["shift"], row["ratio"])


def _ordered(keys, rows):
    """Scenario keys sorted by first appearance of net and shift, then ratio."""
    nets = list(dict.fromkeys(r["net"] for r in rows))
    shifts = list(dict.fromkeys(r["shift"] for r in rows))
    return sorted(keys, key=lambda k: (nets.index(k[0]), shifts.index(k[2]), k[1], k[3]))


@validate_params({"rows": ["array-like"], "field": [str]}, prefer_skip_nested_validation=True)
def mean_accuracies(rows, field="test_accuracy"):
    """Mean of ``field`` over repeats, per scenario and strategy.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed).
    field : str, default="test_accuracy"
        The column to average, e.g. ``"map_at_10"``.

    Returns
    -------
    dict
        ``(net, n_channels, shift, ratio) -> {strategy: mean}``, scenarios in
        table order; rows whose ``field`` is empty are left out.

    Examples
    --------
    >>> from flexsk.bench import mean_accuracies
    >>> rows = [dict(net="conv4", n_channels=1, shift="blur", ratio=2, repeat=repeat,
    ...              strategy=strategy, test_accuracy=accuracy)
    ...         for repeat, strategy, accuracy in [(0, "flex", 0.875), (1, "flex", 0.825),
    ...                                            (0, "ft-all", 0.75), (1, "ft-all", 0.85)]]
    >>> mean_accuracies(rows)
    {('conv4', 1, 'blur', 2): {'flex': 0.85, 'ft-all': 0.8}}
    """
    rows = [parse_row(r) for r in rows]
    groups = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row.get(field) is not None:
            groups[scenario_of(row)][row["strategy"]].append(row[field])
    return {key: {s: float(np.mean(v)) for s, v in groups[key].items()}
            for key in _ordered(groups, rows)}


@validate_params({"means": [dict]}, prefer_skip_nested_validation=True)
def bold_cells(means):
    """The flex variants whose mean is strictly greater than every baseline's.

    Parameters
    ----------
    means : dict
        Strategy -> mean accuracy of one scenario.

    Returns
    -------
    set of str
        Empty when the scenario has no baseline.

    Examples
    --------
    >>> from flexsk.bench import bold_cells
    >>> sorted(bold_cells({"flex": 0.91, "fast": 0.90, "faster": 0.85, "ft-all": 0.90}))
    ['flex']
    """
    baselines = [means[b] for b in BASELINES if b in means]
    if not baselines:
        return set()
    best = max(baselines)
    return {s for s in FLEX_VARIANTS if s in means and means[s] > best + 1e-12}


@validate_params(
    {"rows": ["array-like"], "tol": [_TOL], "field": [str]},
    prefer_skip_nested_validation=True,
)
def win_counts(rows, tol=TIE_TOLERANCE, field="test_accuracy"):
    """How often each strategy is best or tied-best, over scenarios.

    A scenario is a (net, shift, ratio); a strategy is best or tied-best when
    its mean over repeats is within ``tol`` of the scenario's best mean.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed).
    tol : float, default=TIE_TOLERANCE
        Means within ``tol`` of the best are tied with it.
    field : str, default="test_accuracy"
        The column compared.

    Returns
    -------
    n_scenarios : int
    counts : dict
        Strategy -> number of scenarios where it is best or tied-best.

    Examples
    --------
    >>> from flexsk.bench import win_counts
    >>> rows = [dict(net="conv4", n_channels=1, shift="blur", ratio=2, repeat=0,
    ...              strategy=strategy, test_accuracy=accuracy)
    ...         for strategy, accuracy in [("flex", 0.85), ("fast", 0.85), ("ft-all", 0.80)]]
    >>> win_counts(rows)
    (1, {'flex': 1, 'fast': 1, 'ft-all': 0})
    """
    means = mean_accuracies(rows, field)
    counts = Counter()
    for scenario in means.values():
        competing = {s: m for s, m in scenario.items() if s not in REFERENCES}
        best = max(competing.values())
        counts.update(s for s, m in competing.items() if m >= best - tol - 1e-12)
    strategies = [s for s in _strategies_in(rows) if s not in REFERENCES]
    return len(means), {s: counts.get(s, 0) for s in strategies}


def _strategies_in(rows):
    present = {parse_row(r)["strategy"] for r in rows}
    return [s for s in STRATEGIES if s in present] + sorted(present - set(STRATEGIES))


def label_of(strategy):
    """A strategy's column header in the tables (:data:`LABELS`), or its name."""
    return LABELS.get(strategy, strategy)


def _source_values(rows, field):
    """Scenario (without ratio) -> mean of ``field``, e.g. the source accuracy."""
    values = defaultdict(list)
    for row in map(parse_row, rows):
        if row.get(field) is not None:
            values[scenario_of(row)[:3]].append(row[field])
    return {k: float(np.mean(v)) for k, v in values.items()}


def _repeats_of(rows):
    counts = defaultdict(set)
    for row in map(parse_row, rows):
        counts[row["ratio"]].add(row["repeat"])
    return {ratio: len(reps) for ratio, reps in counts.items()}


@validate_params({"rows": ["array-like"], "digits": [_DIGITS]}, prefer_skip_nested_validation=True)
def table3_markdown(rows, *, digits=3):
    """Table 3 style: mean test accuracy per shift and ratio, one table per net.

    The first columns give the ratio (images per class) and the target shift
    with, in parentheses, the source net's accuracy on the target test set;
    then one column per strategy. A flex variant's cell is bold when its mean
    is strictly greater than every baseline's (ft-fc (1), ft-fc (2), ft-ss,
    ft-all) in that row.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed), e.g. from
        :func:`read_results`.
    digits : int, default=3
        Decimals shown.

    Returns
    -------
    str
        Markdown.

    Examples
    --------
    >>> from flexsk.bench import read_results, table3_markdown
    >>> rows = read_results("docs/_static/bench/results.csv")  # doctest: +SKIP
    >>> print(table3_markdown(rows))  # doctest: +SKIP
    """
    rows = [parse_row(r) for r in rows]
    means = mean_accuracies(rows)
    source = _source_values(rows, "source_accuracy")
    strategies = _strategies_in(rows)
    repeats = _repeats_of(rows)
    parts = []
    for net in dict.fromkeys(k[0] for k in means):
        body = []
        for key, scenario in means.items():
            if key[0] != net:
                continue
            cells = _cells(scenario, strategies, bold_cells(scenario), digits)
            shift = key[2] if key[1] == 1 else f"{key[2]} (3ch)"
            src = source.get(key[:3])
            target = f"{shift} ({src:.2f})" if src is not None else shift
            body.append([f"{key[3]} ({repeats.get(key[3], 1)}x)", target] + cells)
        parts.append(f"**{net}**\n\n" + format_table(
            ["ratio", "target (source acc.)"] + [label_of(s) for s in strategies], body))
    return "\n\n".join(parts) + "\n"


def _cells(scenario, strategies, bold, digits):
    """A table row's cells: each strategy's mean, bold if in ``bold``, blank if absent."""
    cells = []
    for s in strategies:
        if s not in scenario:
            cells.append("")
            continue
        text = f"{scenario[s]:.{digits}f}"
        cells.append(f"**{text}**" if s in bold else text)
    return cells


@validate_params({"rows": ["array-like"], "tol": [_TOL]}, prefer_skip_nested_validation=True)
def summary_line(rows, tol=TIE_TOLERANCE):
    """The paper's summary: how often each method is best or tied-best.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed), e.g. from
        :func:`read_results`.
    tol : float, default=TIE_TOLERANCE
        Means within ``tol`` of the best are tied with it.

    Returns
    -------
    str
        One sentence, with the paper's counts for comparison.

    See Also
    --------
    win_counts : The counts themselves.

    Examples
    --------
    >>> from flexsk.bench import read_results, summary_line
    >>> rows = read_results("docs/_static/bench/results.csv")  # doctest: +SKIP
    >>> print(summary_line(rows))  # doctest: +SKIP
    """
    n, counts = win_counts(rows, tol)
    wins = ", ".join(f"{label_of(s)} {c}/{n}" for s, c in counts.items())
    return (f"Out of {n} scenarios (net x shift x ratio, mean over repeats), best or "
            f"tied-best (within {tol} of the best): {wins}. The paper reports "
            f"{PAPER_WINS}.")


@validate_params({"rows": ["array-like"], "digits": [_DIGITS]}, prefer_skip_nested_validation=True)
def mean_accuracy_markdown(rows, *, digits=3):
    """Mean test accuracy of each strategy over all scenarios, and its win count.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed), e.g. from
        :func:`read_results`.
    digits : int, default=3
        Decimals shown.

    Returns
    -------
    str
        A markdown table: one column per strategy; the mean over the
        scenarios where every strategy ran, and the win count.

    Examples
    --------
    >>> from flexsk.bench import read_results, mean_accuracy_markdown
    >>> rows = read_results("docs/_static/bench/results.csv")  # doctest: +SKIP
    >>> print(mean_accuracy_markdown(rows))  # doctest: +SKIP
    """
    means = mean_accuracies(rows)
    n, counts = win_counts(rows)
    strategies = list(counts)
    complete = [m for m in means.values() if all(s in m for s in strategies)]
    avg = [f"{np.mean([m[s] for m in complete]):.{digits}f}" for s in strategies]
    return format_table(
        [""] + [label_of(s) for s in strategies],
        [[f"mean test accuracy over {len(complete)} scenarios"] + avg,
         [f"best or tied-best (of {n})"] + [str(counts[s]) for s in strategies]]) + "\n"


@validate_params(
    {"rows": ["array-like"], "tol": [_TOL], "digits": [_DIGITS]},
    prefer_skip_nested_validation=True,
)
def versus_baselines_markdown(rows, tol=TIE_TOLERANCE, *, within=0.01, digits=3):
    """Each flex variant against the best baseline of each scenario.

    Counts the scenarios where the variant's mean is above the best baseline's
    by more than ``tol``, within ``tol`` of it, or below it by more than
    ``tol``; the scenarios where it is at most ``within`` below it; and gives
    the mean difference.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed), e.g. from
        :func:`read_results`.
    tol : float, default=TIE_TOLERANCE
        Means within ``tol`` of the best are tied with it.
    within : float, default=0.01
        The "within" column counts the scenarios where the variant is at
        most this far below the best baseline (1 point by default).
    digits : int, default=3
        Decimals shown.

    Returns
    -------
    str
        A markdown table, one row per flex variant.

    Examples
    --------
    >>> from flexsk.bench import read_results, versus_baselines_markdown
    >>> rows = read_results("docs/_static/bench/results.csv")  # doctest: +SKIP
    >>> print(versus_baselines_markdown(rows))  # doctest: +SKIP
    """
    means = mean_accuracies(rows)
    body = []
    for s in FLEX_VARIANTS:
        diffs = [m[s] - max(m[b] for b in BASELINES if b in m) for m in means.values()
                 if s in m and any(b in m for b in BASELINES)]
        if not diffs:
            continue
        diffs = np.array(diffs)
        body.append([label_of(s), str(int(np.sum(diffs > tol))),
                     str(int(np.sum(np.abs(diffs) <= tol))), str(int(np.sum(diffs < -tol))),
                     # rounded so that a difference of exactly -within counts as within
                     f"{int(np.sum(np.round(diffs, 9) >= -within))}/{len(diffs)}",
                     f"{diffs.mean():+.{digits}f}"])
    return format_table(["vs. the best baseline", "above", "tied", "below",
                         f"within {100 * within:g} pt", "mean difference"], body) + "\n"


@validate_params({"rows": ["array-like"], "strategy": [str]}, prefer_skip_nested_validation=True)
def picks_markdown(rows, strategy="flex"):
    """How often ``strategy`` returns each candidate, per net and ratio (runs counted).

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed), e.g. from
        :func:`read_results`.
    strategy : str, default="flex"
        The strategy whose picks are counted.

    Returns
    -------
    str
        A markdown table, one row per net and ratio.

    Examples
    --------
    >>> from flexsk.bench import read_results, picks_markdown
    >>> rows = read_results("docs/_static/bench/results.csv")  # doctest: +SKIP
    >>> print(picks_markdown(rows))  # doctest: +SKIP
    """
    rows = [parse_row(r) for r in rows if parse_row(r)["strategy"] == strategy]
    body = []
    for net in dict.fromkeys(r["net"] for r in rows):
        mine = [r for r in rows if r["net"] == net]
        keys = list(mine[0]["units"]) + ["all"]
        for ratio in sorted({r["ratio"] for r in mine}):
            picks = Counter(r["selected_unit"] for r in mine if r["ratio"] == ratio)
            cells = ", ".join(f"{k} {picks[k]}" for k in keys if picks[k])
            body.append([net, str(ratio), str(sum(picks.values())), cells])
    return format_table(["net", "ratio", "runs", f"units {strategy} returns (runs)"],
                        body) + "\n"


@validate_params({"rows": ["array-like"], "tol": [_TOL]}, prefer_skip_nested_validation=True)
def win_counts_markdown(rows, tol=TIE_TOLERANCE):
    """Win counts (best or tied-best) per ratio and over all ratios, as a markdown table.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed), e.g. from
        :func:`read_results`.
    tol : float, default=TIE_TOLERANCE
        Means within ``tol`` of the best are tied with it.

    Returns
    -------
    str
        A markdown table: one row per ratio and one over all ratios.

    See Also
    --------
    win_counts : The counts over all scenarios.

    Examples
    --------
    >>> from flexsk.bench import read_results, win_counts_markdown
    >>> rows = read_results("docs/_static/bench/results.csv")  # doctest: +SKIP
    >>> print(win_counts_markdown(rows))  # doctest: +SKIP
    """
    rows = [parse_row(r) for r in rows]
    strategies = [s for s in _strategies_in(rows) if s not in REFERENCES]
    body = []
    for ratio in sorted({r["ratio"] for r in rows}):
        n, counts = win_counts([r for r in rows if r["ratio"] == ratio], tol)
        body.append([f"{ratio} per class"] + [f"{counts.get(s, 0)}/{n}" for s in strategies])
    n, counts = win_counts(rows, tol)
    body.append(["all ratios"] + [f"{counts[s]}/{n}" for s in strategies])
    return format_table(["best or tied-best"] + [label_of(s) for s in strategies], body) + "\n"


@validate_params(
    {"rows": ["array-like"], "tol": [_TOL], "digits": [_DIGITS]},
    prefer_skip_nested_validation=True,
)
def selection_markdown(rows, tol=TIE_TOLERANCE, *, digits=3):
    """How good the picks are, per ratio: flex's choices against a test-set oracle.

    Every flex run records the test accuracy of all its candidates (each unit
    and ft-all). The *oracle* is the best of them, i.e. what a selection that
    could see the test set would return. A fast or faster run is compared
    with the flex run of the same net, shift, ratio and repeat (same subset
    and seed, so its tuned unit is the same model as flex's candidate). The
    regret of a method is the oracle's test accuracy minus the method's.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed), e.g. from
        :func:`read_results`.
    tol : float, default=TIE_TOLERANCE
        Means within ``tol`` of the best are tied with it.
    digits : int, default=3
        Decimals shown.

    Returns
    -------
    str
        A markdown table, one row per ratio.

    Examples
    --------
    >>> from flexsk.bench import read_results, selection_markdown
    >>> rows = read_results("docs/_static/bench/results.csv")  # doctest: +SKIP
    >>> print(selection_markdown(rows))  # doctest: +SKIP
    """
    rows = [parse_row(r) for r in rows]
    flex = {run_key(r)[:5]: r for r in rows if r["strategy"] == "flex"}
    methods = [s for s in FLEX_VARIANTS if any(r["strategy"] == s for r in rows)]
    stats = defaultdict(lambda: defaultdict(list))
    for row in rows:
        ref = flex.get(run_key(row)[:5])
        if row["strategy"] not in methods or ref is None:
            continue
        oracle = max(ref["candidate_test_scores"].values())
        for group in (row["ratio"], "all ratios"):
            stats[group][row["strategy"]].append(oracle - row["test_accuracy"])
            if row["strategy"] == "flex":
                stats[group]["oracle"].append(oracle)
                stats[group]["returns all"].append(row["selected_unit"] == "all")
    body = []
    for group in sorted(g for g in stats if g != "all ratios") + ["all ratios"]:
        if group not in stats:
            continue
        d = stats[group]
        hit = np.mean(np.array(d["flex"]) <= tol) if d["flex"] else np.nan
        body.append(
            [f"{group} per class" if group != "all ratios" else group, str(len(d["flex"])),
             f"{np.mean(d['returns all']):.0%}" if d["returns all"] else "",
             f"{hit:.0%}", f"{np.mean(d['oracle']):.{digits}f}" if d["oracle"] else ""]
            + [f"{np.mean(d[m]):.{digits}f}" if d[m] else "" for m in methods])
    return format_table(
        ["ratio", "flex runs", "flex returns ft-all", "flex picks a test-best candidate",
         "oracle test acc."] + [f"regret of {label_of(m)}" for m in methods], body) + "\n"


@validate_params({"rows": ["array-like"], "digits": [_DIGITS]}, prefer_skip_nested_validation=True)
def scratch_markdown(rows, *, digits=3):
    """The scenarios where every fine-tuning strategy does worse than training from scratch.

    ``scratch`` (see :data:`~flexsk.bench.REFERENCES`) trains the same
    architecture from re-initialized weights on the same data. A scenario
    where it beats the best fine-tuning strategy says that the pretrained
    weights hurt there, or that fine-tuning stopped too early.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed), e.g. from
        :func:`read_results`.
    digits : int, default=3
        Decimals shown.

    Returns
    -------
    str
        A sentence and, when there are any, a markdown table of those
        scenarios.

    Examples
    --------
    >>> from flexsk.bench import read_results, scratch_markdown
    >>> rows = read_results("docs/_static/bench/results.csv")  # doctest: +SKIP
    >>> print(scratch_markdown(rows))  # doctest: +SKIP
    """
    means = mean_accuracies([parse_row(r) for r in rows])
    with_scratch = {k: m for k, m in means.items()
                    if "scratch" in m and any(s not in REFERENCES for s in m)}
    if not with_scratch:
        return "No scratch runs.\n"
    body = []
    for key, m in with_scratch.items():
        tuned = {s: v for s, v in m.items() if s not in REFERENCES}
        best = max(tuned, key=tuned.get)
        if m["scratch"] > tuned[best]:
            body.append([key[0], key[2] if key[1] == 1 else f"{key[2]} (3ch)", str(key[3]),
                         f"{m['scratch']:.{digits}f}", f"{label_of(best)} {tuned[best]:.{digits}f}",
                         f"{m['flex']:.{digits}f}" if "flex" in m else ""])
    text = (f"Training from scratch beats every fine-tuning strategy in {len(body)} of "
            f"{len(with_scratch)} scenarios.\n")
    if body:
        text += "\n" + format_table(["net", "shift", "ratio", "scratch", "best fine-tuning",
                                     "flex"], body) + "\n"
    return text


#: What flex is compared with in :func:`recipes_markdown`: the paper's plain baselines
#: and the recipes practitioners use.
RECIPE_RIVALS = ("ft-all", "ft-fc-1") + RECIPES


@validate_params({"rows": ["array-like"], "within": [_TOL], "digits": [_DIGITS]},
                 prefer_skip_nested_validation=True)
def recipes_markdown(rows, *, within=0.01, digits=3):
    """Flex against ft-all, ft-fc (1) and the recipes (Auto-RGN, LP-FT, LLRD).

    Per method: its mean test accuracy over the scenarios that have flex and
    every method, flex's mean difference from it, the scenarios where flex is
    at most ``within`` below it, and its cost: the median over scenarios of
    its mean ``fit_seconds`` over ft-all's. A sentence gives the scenarios
    where flex is within ``within`` of the best of them all.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed), e.g. from
        :func:`read_results`.
    within : float, default=0.01
        One point.
    digits : int, default=3
        Decimals shown.

    Returns
    -------
    str
        A sentence and a markdown table; a sentence alone without such rows.

    Examples
    --------
    >>> from flexsk.bench import read_results, recipes_markdown
    >>> rows = read_results("docs/_static/bench/results.csv")  # doctest: +SKIP
    >>> print(recipes_markdown(rows))  # doctest: +SKIP
    """
    rows = [parse_row(r) for r in rows]
    means = mean_accuracies(rows)
    seconds = mean_accuracies(rows, field="fit_seconds")
    methods = [m for m in RECIPE_RIVALS if any(m in v for v in means.values())]
    common = [k for k, v in means.items() if "flex" in v and all(m in v for m in methods)]
    if not common or not any(m in RECIPES for m in methods):
        return "No scenario holds flex and the recipes.\n"
    best = [max(means[k][m] for m in methods) for k in common]
    close = sum(means[k]["flex"] >= b - within - 1e-12 for k, b in zip(common, best))
    flex_mean = np.mean([means[k]["flex"] for k in common])
    body = [["flex", f"{flex_mean:.{digits}f}", "", "",
             f"{np.median([seconds[k]['flex'] / seconds[k]['ft-all'] for k in common]):.2f}"
             if "ft-all" in methods else ""]]
    for m in methods:
        diff = 100 * (flex_mean - np.mean([means[k][m] for k in common]))
        body.append([label_of(m), f"{np.mean([means[k][m] for k in common]):.{digits}f}",
                     f"{diff:+.2f}",
                     f"{sum(means[k]['flex'] >= means[k][m] - within - 1e-12 for k in common)}"
                     f"/{len(common)}",
                     f"{np.median([seconds[k][m] / seconds[k]['ft-all'] for k in common]):.2f}"
                     if "ft-all" in methods else ""])
    return (f"Over {len(common)} scenarios, flex is within {100 * within:g} point of the best "
            f"of {', '.join(label_of(m) for m in methods)} in {close}/{len(common)}.\n\n"
            + format_table(["method", "mean test accuracy", "flex − method, points",
                            f"flex within {100 * within:g} point", "fit seconds / ft-all"],
                           body) + "\n")


@validate_params({"rows": ["array-like"], "digits": [_DIGITS]}, prefer_skip_nested_validation=True)
def retrieval_markdown(rows, *, digits=3):
    """Table 4 style: mAP@10 of the tuned nets' embeddings against the source gallery.

    One table per net; rows are (ratio, shift); columns the pretrained net
    (no tuning) and the strategies of :data:`RETRIEVAL_STRATEGIES`, means
    over repeats. The best tuned value of each row is bold. A last table
    gives the mean over all scenarios.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed), e.g. from
        :func:`read_results`.
    digits : int, default=3
        Decimals shown.

    Returns
    -------
    str
        Markdown.

    Examples
    --------
    >>> from flexsk.bench import read_results, retrieval_markdown
    >>> rows = read_results("docs/_static/bench/results.csv")  # doctest: +SKIP
    >>> print(retrieval_markdown(rows))  # doctest: +SKIP
    """
    rows = [parse_row(r) for r in rows]
    means = mean_accuracies(rows, "map_at_10")
    source = mean_accuracies(rows, "source_map_at_10")
    strategies = [s for s in RETRIEVAL_STRATEGIES if any(s in m for m in means.values())]
    parts, totals = [], defaultdict(list)
    for net in dict.fromkeys(k[0] for k in means):
        body = []
        for key, scenario in means.items():
            if key[0] != net:
                continue
            src = np.mean(list(source.get(key, {}).values())) if source.get(key) else None
            best = max(scenario.values())
            cells = _cells(scenario, strategies,
                           {s for s, m in scenario.items() if m >= best - 1e-12}, digits)
            for s in strategies:
                if s in scenario:
                    totals[s].append(scenario[s])
            if src is not None:
                totals["pretrained"].append(src)
            shift = key[2] if key[1] == 1 else f"{key[2]} (3ch)"
            body.append([str(key[3]), shift, "" if src is None else f"{src:.{digits}f}"]
                        + cells)
        parts.append(f"**{net}**\n\n" + format_table(
            ["ratio", "target", "pretrained"] + [label_of(s) for s in strategies], body))
    n, wins = win_counts(rows, field="map_at_10")
    mean_row = ([f"mean over {n} scenarios", f"{np.mean(totals['pretrained']):.{digits}f}"
                 if totals["pretrained"] else ""]
                + [f"{np.mean(totals[s]):.{digits}f}" for s in strategies])
    win_row = [f"best or tied-best (of {n})", ""] + [str(wins.get(s, 0)) for s in strategies]
    parts.append(format_table(["", "pretrained"] + [label_of(s) for s in strategies],
                              [mean_row, win_row]))
    return "\n\n".join(parts) + "\n"


# -- selection you can trust: regret, agreement, rules, refit -------------------------------------


def _pick(validation_scores, validation_losses, order, by_loss):
    """The key a rule picks from stored validation scores: the ranking rule
    (:mod:`flexsk._ranking`), or with ``by_loss=False`` the former rule (highest
    accuracy, then forward order)."""
    keys = sorted(validation_scores, key=lambda k: order.index(k) if k in order else len(order))
    scores = {k: validation_scores[k] for k in keys}
    return ranked(scores, validation_losses if by_loss else None)[0]


@validate_params({"rows": ["array-like"], "digits": [_DIGITS]}, prefer_skip_nested_validation=True)
def regret_markdown(rows, *, digits=2):
    """Flex's selection regret per scenario, under the ranking rule and under the old one.

    The regret of a flex run is the test accuracy of the best of its own
    candidates in hindsight minus that of the candidate it picked, in points.
    "accuracy, then loss" replays the rule flex uses from the stored
    validation accuracies and losses; "accuracy, then earliest" replays the
    former rule (ties to the earliest unit, a unit before ft-all) on the same
    candidates. Needs the ``validation_losses`` column.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed).
    digits : int, default=2
        Decimals shown.

    Returns
    -------
    str
        A markdown table: one row per scenario, then the mean over scenarios
        and the count of scenarios whose regret exceeds one point.

    Examples
    --------
    >>> from flexsk.bench import regret_markdown
    >>> row = dict(net="conv4", n_channels=1, shift="blur", ratio=2, repeat=0,
    ...            strategy="flex", units=["conv1", "fc1"],
    ...            validation_scores={"conv1": 0.9, "fc1": 0.9, "all": 0.8},
    ...            validation_losses={"conv1": 0.5, "fc1": 0.3, "all": 0.2},
    ...            candidate_test_scores={"conv1": 0.80, "fc1": 0.85, "all": 0.84})
    >>> line = regret_markdown([row]).splitlines()[2]  # conv4, blur, ratio 2
    >>> [cell.strip() for cell in line.split("|")[5:7]]  # new rule, old rule
    ['0.00', '5.00']
    """
    rows = [parse_row(r) for r in rows if r["strategy"] == "flex"]
    rows = [r for r in rows if r.get("validation_losses") is not None]
    per = defaultdict(lambda: defaultdict(list))
    for row in rows:
        order = list(row["units"]) + ["all"]
        tests = row["candidate_test_scores"]
        best = max(tests.values())
        for rule, by_loss in (("new", True), ("old", False)):
            pick = _pick(row["validation_scores"], row["validation_losses"], order, by_loss)
            per[scenario_of(row)][rule].append(100 * (best - tests[pick]))
    keys = _ordered(per, rows)
    body = [[net, shift, str(ratio), str(len(per[k]["new"])),
             f"{np.mean(per[k]['new']):.{digits}f}", f"{np.mean(per[k]['old']):.{digits}f}"]
            for k in keys for net, _, shift, ratio in [k]]
    if keys:
        new = [np.mean(per[k]["new"]) for k in keys]
        old = [np.mean(per[k]["old"]) for k in keys]
        body.append(["mean", "", "", str(sum(len(per[k]["new"]) for k in keys)),
                     f"{np.mean(new):.{digits}f}", f"{np.mean(old):.{digits}f}"])
        body.append(["scenarios > 1 point", "", "", "", f"{sum(v > 1 for v in new)}/{len(keys)}",
                     f"{sum(v > 1 for v in old)}/{len(keys)}"])
    return format_table(["net", "shift", "ratio", "runs", "regret (accuracy, then loss)",
                         "regret (accuracy, then earliest)"], body) + "\n"


@validate_params({"rows": ["array-like"]}, prefer_skip_nested_validation=True)
def agreement_markdown(rows):
    """How often two repeats of a scenario pick the same unit, per strategy.

    Over every pair of repeats of a scenario (different training subsets and
    seeds), the fraction whose ``selected_unit`` is the same.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed).

    Returns
    -------
    str
        A markdown table, one row per ratio that has repeats.

    Examples
    --------
    >>> from flexsk.bench import agreement_markdown
    >>> rows = [dict(net="conv4", n_channels=1, shift="blur", ratio=2, repeat=repeat,
    ...              strategy="flex", selected_unit=unit)
    ...         for repeat, unit in enumerate(["conv1", "conv1", "fc1"])]
    >>> print(agreement_markdown(rows).splitlines()[2])
    | 2 per class | 3                | 33%             |
    """
    rows = [parse_row(r) for r in rows]
    picks = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["strategy"] in FLEX_VARIANTS:
            picks[(scenario_of(row), row["strategy"])][row["repeat"]] = row["selected_unit"]
    stats = defaultdict(lambda: defaultdict(list))
    for (scenario, strategy), by_repeat in picks.items():
        units = list(by_repeat.values())
        for i in range(len(units)):
            for j in range(i + 1, len(units)):
                stats[scenario[3]][strategy].append(units[i] == units[j])
    methods = [s for s in FLEX_VARIANTS if any(s in d for d in stats.values())]
    body = [[f"{ratio} per class", str(len(stats[ratio][methods[0]]))]
            + [f"{np.mean(stats[ratio][m]):.0%}" if stats[ratio][m] else "" for m in methods]
            for ratio in sorted(stats)]
    return format_table(["ratio", "pairs of repeats"] + [f"same pick, {label_of(m)}"
                                                         for m in methods], body) + "\n"


@validate_params({"rows": ["array-like"], "digits": [_DIGITS]}, prefer_skip_nested_validation=True)
def refit_markdown(rows, *, digits=3):
    """What refitting on training and validation data adds, per ratio and strategy.

    The gain of a run is its returned (refit) model's test accuracy minus its
    selection-run pick's (``refit_test_accuracy - test_accuracy``); the
    table gives its mean over runs, in points, and the mean accuracies.
    Needs the ``refit_test_accuracy`` column.

    Parameters
    ----------
    rows : list of dict
        Results rows (raw CSV strings or parsed).
    digits : int, default=3
        Decimals of the accuracies.

    Returns
    -------
    str
        A markdown table: one row per ratio, a column per strategy.

    Examples
    --------
    >>> from flexsk.bench import refit_markdown
    >>> rows = [dict(net="conv4", n_channels=1, shift="blur", ratio=2, repeat=repeat,
    ...              strategy="flex", test_accuracy=before, refit_test_accuracy=after)
    ...         for repeat, (before, after) in enumerate([(0.70, 0.75), (0.80, 0.81)])]
    >>> print(refit_markdown(rows).splitlines()[2])
    | 2 per class | 0.750 → 0.780 (+3.0) |
    """
    rows = [parse_row(r) for r in rows if r.get("refit_test_accuracy") not in (None, "")]
    strategies = _strategies_in(rows)
    stats = defaultdict(lambda: defaultdict(list))
    for row in rows:
        for group in (row["ratio"], "all ratios"):
            stats[group][row["strategy"]].append(
                (row["test_accuracy"], row["refit_test_accuracy"]))
    body = []
    for group in sorted(g for g in stats if g != "all ratios") + ["all ratios"]:
        if group not in stats:
            continue
        cells = []
        for s in strategies:
            pairs = np.array(stats[group][s]) if stats[group][s] else None
            cells.append("" if pairs is None else
                         f"{pairs[:, 0].mean():.{digits}f} → {pairs[:, 1].mean():.{digits}f} "
                         f"({100 * (pairs[:, 1] - pairs[:, 0]).mean():+.1f})")
        body.append([f"{group} per class" if group != "all ratios" else group] + cells)
    return format_table(["ratio"] + [label_of(s) for s in strategies], body) + "\n"

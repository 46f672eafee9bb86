"""Figures of flex-tuning: per-unit scores and unit-selection heat maps.

The functions draw with matplotlib, an optional dependency
(``pip install "flexsk[plot]"``), imported only when a function is called.
:func:`plot_unit_scores` and :func:`plot_selection_heatmap` draw on a given
Axes (or a new one) and return it; :func:`unit_scores_figure` makes a
Figure of several panels and returns it.

:func:`write_figures` writes the figures of a ``flexsk bench`` results
directory as PNG files.

They read either a fitted :class:`~flexsk.FlexTuner` or a *results table*:
the rows of the CSV written by ``flexsk bench`` (a path to it, or a list of
dicts such as :func:`flexsk.bench.read_results` returns; raw CSV strings are
parsed). No pandas needed.
"""

import os
from collections import Counter, defaultdict
from numbers import Integral
from pathlib import Path

import numpy as np
from scipy.stats import rankdata
from sklearn.utils._param_validation import HasMethods, Interval, validate_params
from sklearn.utils.validation import check_is_fitted

from ._files import atomic_write
from ._text import key_name
# The bench's public results reader: the bench itself never imports this module.
from .bench import RESULTS_CSV, BenchError, best_key, parse_row, read_results

__all__ = ["plot_unit_scores", "plot_selection_heatmap", "unit_scores_figure",
           "write_figures"]

_MISSING = 'flexsk.plot needs matplotlib: pip install "flexsk[plot]"'
#: Marker colour and horizontal offset (within a heat-map cell) of each method.
_METHOD_STYLE = {"flex": ("tab:red", -0.25), "fast": ("tab:orange", 0.0),
                 "faster": ("tab:green", 0.25)}


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(_MISSING) from exc
    return plt


def _axes(ax, figsize=(5, 3.5)):
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(figsize=figsize)
    return ax


def _results(results):
    if isinstance(results, (str, Path)):
        return read_results(results)
    return [parse_row(dict(row)) for row in results]


def _only(values, what, given):
    values = list(dict.fromkeys(values))
    if not values:
        raise ValueError(f"the results hold no rows to plot (no {what}).")
    if given is not None:
        if given not in values:
            raise ValueError(f"no results for {what}={given!r}; the results hold {values}.")
        return given
    if len(values) != 1:
        raise ValueError(f"the results hold several {what}s {values}: pass {what}=...")
    return values[0]


@validate_params(
    {
        "tuner_or_results": [HasMethods(["fit", "get_params"]), list, tuple, str, os.PathLike],
        "X_test": ["array-like", None],
        "y_test": ["array-like", None],
        "net": [str, None],
        "shift": [str, None],
        "ratios": ["array-like", None],
        "include_all": ["boolean"],
        "ax": [HasMethods(["plot"]), None],
    },
    prefer_skip_nested_validation=False,  # a tuner's methods validate their input
)
def plot_unit_scores(tuner_or_results, *, X_test=None, y_test=None, net=None, shift=None,
                     ratios=None, include_all=True, ax=None):
    """Validation (solid) and test (dashed) accuracy of tuning each single unit.

    The paper's Figure 1. For a fitted :class:`~flexsk.FlexTuner` (best
    with ``strategy="flex"`` and ``keep_candidates=True``), one solid line of
    ``validation_scores_`` over its candidates (units in forward order, then
    ``"all"``) and, given ``X_test`` and ``y_test``, one dashed line of
    :meth:`~flexsk.FlexTuner.score_candidates`; a triangle marks
    ``selected_unit_``. For a results table, the ``"flex"`` rows of one net
    and shift: one colour per ratio, with the mean over repeats of the
    validation (solid) and test (dashed) accuracies, and a triangle on the
    unit flex picks most often at that ratio.

    Parameters
    ----------
    tuner_or_results : FlexTuner, list of dict, str or path-like
        A fitted tuner, or results rows / the path of a results CSV.
    X_test, y_test : array-like, optional
        Test data for the dashed line of a tuner (needs
        ``keep_candidates=True``). Ignored for results.
    net, shift : str, optional
        Which scenario of the results to draw; needed when the results hold
        several.
    ratios : list of int, optional
        Ratios to draw (default: all in the results).
    include_all : bool, default=True
        Also draw the ``"all"`` candidate (ft-all), as the last point.
    ax : matplotlib Axes, optional
        Where to draw; a new figure by default.

    Returns
    -------
    ax : matplotlib Axes
        For a tuner its ``lines`` are the validation line, the test line (if
        test data is given) and the selection marker; for results, per ratio a
        validation line, a test line and a marker.

    Raises
    ------
    ImportError
        If matplotlib is not installed.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from flexsk import FlexTuner
    >>> from flexsk.datasets import make_digits_shift
    >>> from flexsk.plot import plot_unit_scores
    >>> from flexsk.zoo import load_source_net
    >>> b = make_digits_shift("blur", image_size=8)
    >>> X, y, split = b.data, b.target, b.split
    >>> tuner = FlexTuner(load_source_net("conv4", image_size=8), strategy="flex",
    ...                   keep_candidates=True, max_epochs=2, random_state=0)
    >>> tuner = tuner.fit(X[split == "train"], y[split == "train"],
    ...                   X_val=X[split == "val"], y_val=y[split == "val"])
    >>> ax = plot_unit_scores(tuner, X_test=X[split == "test"], y_test=y[split == "test"])
    >>> len(ax.lines)  # validation, test, selection marker
    3

    From the results of ``flexsk bench``:

    >>> ax = plot_unit_scores("bench-results/results.csv", net="conv7",
    ...                       shift="blur")  # doctest: +SKIP
    """
    ax = _axes(ax)
    if hasattr(tuner_or_results, "get_params") and hasattr(tuner_or_results, "fit"):
        _tuner_unit_scores(tuner_or_results, X_test, y_test, include_all, ax)
    else:
        _results_unit_scores(_results(tuner_or_results), net, shift, ratios, include_all,
                             ax)
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    return ax


def _candidate_keys(units, available, include_all):
    keys = [u for u in units if u in available]
    if include_all and "all" in available:
        keys.append("all")
    return keys


def _tuner_unit_scores(tuner, X_test, y_test, include_all, ax):
    check_is_fitted(tuner)
    val = {key_name(k): v for k, v in tuner.validation_scores_.items()}
    keys = _candidate_keys(tuner.units_, val, include_all)
    if not keys:
        raise ValueError(f"the tuner has no single-unit candidates to plot (strategy="
                         f"{tuner.strategy!r}); use strategy='flex'.")
    x = np.arange(len(keys))
    ax.plot(x, [val[k] for k in keys], "-o", color="tab:blue", label="validation")
    if X_test is not None:
        if not tuner.keep_candidates:
            raise ValueError("test scores need the candidates: fit the tuner with "
                             "keep_candidates=True.")
        test = {key_name(k): v for k, v in tuner.score_candidates(X_test, y_test).items()}
        ax.plot(x, [test[k] for k in keys], "--o", color="tab:blue", label="test",
                markerfacecolor="none")
    selected = key_name(tuner.selected_unit_)
    if selected in keys:
        i = keys.index(selected)
        ax.plot([i], [val[selected]], "v", color="tab:red", markersize=12,
                markeredgecolor="black", label=f"selected: {selected}")
    ax.set_xticks(x, keys)
    ax.set_xlabel("tuned unit")
    ax.set_title(f"FlexTuner({tuner.strategy})")
    ax.legend(fontsize="small")


def _mean_scores(rows, column):
    sums = defaultdict(list)
    for row in rows:
        for key, value in (row.get(column) or {}).items():
            sums[key].append(value)
    return {k: float(np.mean(v)) for k, v in sums.items()}


def _flex_rows(rows):
    """The flex rows, which hold every candidate's scores."""
    flex = [r for r in rows if r["strategy"] == "flex"]
    if not flex:
        raise ValueError("the results hold no 'flex' rows: per-unit scores come from them.")
    return flex


def _results_unit_scores(rows, net, shift, ratios, include_all, ax):
    flex = _flex_rows(rows)
    net = _only((r["net"] for r in flex), "net", net)
    flex = [r for r in flex if r["net"] == net]
    shift = _only((r["shift"] for r in flex), "shift", shift)
    flex = [r for r in flex if r["shift"] == shift]
    available = sorted({r["ratio"] for r in flex})
    if ratios is not None:
        unknown = [r for r in ratios if r not in available]
        if unknown:
            raise ValueError(f"no flex results at ratios {unknown} for {net}/{shift}; the "
                             f"results hold ratios {available}.")
    ratios = available if ratios is None else list(ratios)
    units = flex[0]["units"]
    colours = _pyplot().get_cmap("viridis")(np.linspace(0.0, 0.85, max(len(ratios), 1)))
    keys = None
    for colour, ratio in zip(colours, ratios):
        group = [r for r in flex if r["ratio"] == ratio]
        val = _mean_scores(group, "validation_scores")
        test = _mean_scores(group, "candidate_test_scores")
        keys = _candidate_keys(units, val, include_all)
        x = np.arange(len(keys))
        n = len(group)
        ax.plot(x, [val[k] for k in keys], "-o", color=colour, markersize=4,
                label=f"{ratio}/class" + (f" ({n} runs)" if n > 1 else ""))
        ax.plot(x, [test.get(k, np.nan) for k in keys], "--", color=colour)
        picks = Counter(r["selected_unit"] for r in group)
        pick = max(picks, key=lambda k: (picks[k], -_position(keys, k)))
        if pick in keys:
            ax.plot([keys.index(pick)], [val[pick]], "v", color=colour, markersize=11,
                    markeredgecolor="black")
    if keys is not None:
        ax.set_xticks(np.arange(len(keys)), keys)
    ax.set_xlabel("tuned unit")
    ax.set_title(f"{net}: {shift}" + (" (3ch)" if flex[0].get("n_channels") == 3 else ""))
    ax.legend(fontsize="x-small", title="solid: val, dashed: test", title_fontsize="x-small")


def _position(keys, key):
    return keys.index(key) if key in keys else len(keys)


@validate_params(
    {
        "results": [list, tuple, str, os.PathLike],
        "net": [str, None],
        "shifts": ["array-like", None],
        "ncols": [Interval(Integral, 1, None, closed="left")],
        "include_all": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def unit_scores_figure(results, *, net=None, shifts=None, ncols=5, include_all=True):
    """A grid of :func:`plot_unit_scores` panels, one per shift of one net.

    Parameters
    ----------
    results : list of dict, str or path-like
        Results rows or the path of a results CSV.
    net : str, optional
        Needed when the results hold several nets.
    shifts : list of str, optional
        Default: every shift with flex rows, in the results' order.
    ncols : int, default=5
        Panels per row of the grid.
    include_all : bool, default=True
        Also draw the ``"all"`` candidate (ft-all) in every panel.

    Returns
    -------
    fig : matplotlib Figure
        One Axes per shift, drawn by :func:`plot_unit_scores`.

    Raises
    ------
    ImportError
        If matplotlib is not installed.

    See Also
    --------
    plot_unit_scores : One panel, for a results table or a fitted tuner.

    Examples
    --------
    A results table needs, per row, the ``net``, ``shift``, ``ratio``,
    ``strategy``, ``units``, ``selected_unit`` and, for the flex rows, the
    ``validation_scores`` and ``candidate_test_scores`` of every candidate:

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from flexsk.plot import unit_scores_figure
    >>> units = ["conv1", "conv2", "fc1", "fc2"]
    >>> scores = {"conv1": 0.70, "conv2": 0.84, "fc1": 0.86, "fc2": 0.80, "all": 0.85}
    >>> rows = [dict(net="conv4", shift=shift, ratio=2, strategy="flex", units=units,
    ...              selected_unit="fc1", validation_scores=scores,
    ...              candidate_test_scores=scores)
    ...         for shift in ["blur", "noise", "rotation"]]
    >>> fig = unit_scores_figure(rows, ncols=3)
    >>> len(fig.axes)
    3

    The figure of a ``flexsk bench`` run:

    >>> fig = unit_scores_figure("bench-results", net="conv4")  # doctest: +SKIP
    >>> fig.savefig("fig1_conv4.png")  # doctest: +SKIP
    """
    plt = _pyplot()
    rows = _flex_rows(_results(results))
    net = _only((r["net"] for r in rows), "net", net)
    rows = [r for r in rows if r["net"] == net]
    if shifts is None:
        shifts = list(dict.fromkeys(r["shift"] for r in rows))
    if not len(shifts):
        raise ValueError("shifts is empty: pass at least one shift, or None for all.")
    ncols = min(ncols, len(shifts))
    nrows = -(-len(shifts) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.9 * nrows),
                             squeeze=False, sharey=True, layout="constrained")
    for ax, shift in zip(axes.flat, shifts):
        plot_unit_scores(rows, net=net, shift=shift, include_all=include_all, ax=ax)
        ax.tick_params(axis="x", labelsize="x-small", rotation=45)
        ax.set_xlabel("")
    for ax in list(axes.flat)[len(shifts):]:
        ax.set_visible(False)
    fig.suptitle(f"{net}: validation (solid) and test (dashed) accuracy of tuning each "
                 f"unit; triangle = flex's most frequent pick")
    return fig


@validate_params(
    {
        "results": [list, tuple, str, os.PathLike],
        "net": [str, None],
        "methods": ["array-like"],
        "include_all": ["boolean"],
        "fast_ignores_all": ["boolean"],
        "ax": [HasMethods(["imshow"]), None],
    },
    prefer_skip_nested_validation=True,
)
def plot_selection_heatmap(results, *, net=None, methods=("flex", "fast", "faster"),
                           include_all=True, fast_ignores_all=True, ax=None):
    """Which unit each method picks, over each unit's test-accuracy rank.

    The paper's Figure 2, one row per scenario (shift and ratio) of one net
    and one column per unit (and ``"all"``). The background is the rank of
    each candidate's mean test accuracy among the flex candidates of that
    scenario (1 = best, darkest). Markers show the picks of each method
    (flex left, fast centre, faster right), sized by the fraction of
    repeats that picked it.

    Parameters
    ----------
    results : list of dict, str or path-like
        Results rows or the path of a results CSV.
    net : str, optional
        Needed when the results hold several nets (their units differ).
    methods : sequence of str, default=("flex", "fast", "faster")
        Strategies whose picks are marked; one marker collection each.
    include_all : bool, default=True
        Add the ``"all"`` column (ft-all), which flex can return.
    fast_ignores_all : bool, default=True
        Mark fast's proxy-selected unit even where it then returned ft-all,
        as the paper's Figure 2 does.
    ax : matplotlib Axes, optional
        Where to draw; a new figure by default. A colour bar is added next to
        it.

    Returns
    -------
    ax : matplotlib Axes
        Its ``images`` hold the rank background, its ``collections`` one
        marker collection per method.

    Raises
    ------
    ImportError
        If matplotlib is not installed.

    See Also
    --------
    flexsk.bench.run_bench : Runs a grid of scenarios and writes such results.

    Examples
    --------
    One scenario, with the candidates' test accuracies from the flex row and
    the pick of each method (for fast, its proxy choice when ``proxy_scores``
    are given):

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from flexsk.plot import plot_selection_heatmap
    >>> units = ["conv1", "conv2", "fc1", "fc2"]
    >>> test = {"conv1": 0.70, "conv2": 0.84, "fc1": 0.86, "fc2": 0.80, "all": 0.85}
    >>> rows = [dict(net="conv4", shift="blur", ratio=2, strategy=strategy, units=units,
    ...              selected_unit=pick, candidate_test_scores=test)
    ...         for strategy, pick in [("flex", "fc1"), ("fast", "conv2"), ("faster", "fc1")]]
    >>> ax = plot_selection_heatmap(rows)
    >>> len(ax.images), len(ax.collections)  # the rank background; one marker set per method
    (1, 3)

    The figure of a ``flexsk bench`` run:

    >>> ax = plot_selection_heatmap("bench-results/results.csv",
    ...                             net="conv4")  # doctest: +SKIP
    """
    _pyplot()
    rows = _results(results)
    net = _only((r["net"] for r in rows), "net", net)
    rows = [r for r in rows if r["net"] == net]
    units = next((r["units"] for r in rows if r.get("units")), None)
    if units is None:
        raise ValueError("the results hold no 'units' column: each row needs the units of "
                         "its net (as flexsk bench writes them).")
    columns = list(units) + (["all"] if include_all else [])
    shifts = list(dict.fromkeys(r["shift"] for r in rows))
    scenarios = sorted({(r["shift"], r["ratio"]) for r in rows},
                       key=lambda s: (shifts.index(s[0]), s[1]))
    ranks = np.full((len(scenarios), len(columns)), np.nan)
    for i, (shift, ratio) in enumerate(scenarios):
        flex = [r for r in rows if r["strategy"] == "flex" and r["shift"] == shift
                and r["ratio"] == ratio]
        test = _mean_scores(flex, "candidate_test_scores")
        scores = np.array([test.get(c, np.nan) for c in columns])
        known = ~np.isnan(scores)
        if known.any():
            ranks[i, known] = rankdata(-scores[known], method="average")

    ax = _axes(ax, figsize=(7, 1.2 + 0.28 * len(scenarios)))
    image = ax.imshow(ranks, cmap="Blues_r", aspect="auto", vmin=1, vmax=len(columns),
                      interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, label="test-accuracy rank (1 = best)", shrink=0.8)
    for method in methods:
        colour, offset = _METHOD_STYLE.get(method, ("tab:purple", 0.0))
        xs, ys, sizes = [], [], []
        for i, (shift, ratio) in enumerate(scenarios):
            picks = Counter(_pick(r, method, fast_ignores_all) for r in rows
                            if r["strategy"] == method and r["shift"] == shift
                            and r["ratio"] == ratio)
            total = sum(picks.values())
            for pick, count in picks.items():
                if pick in columns:
                    xs.append(columns.index(pick) + offset)
                    ys.append(i)
                    sizes.append(15 + 75 * count / total)
        ax.scatter(xs, ys, s=sizes, marker="v", color=colour, edgecolors="black",
                   linewidths=0.5, label=method, zorder=3)
    ax.set_xticks(np.arange(len(columns)), columns)
    ax.set_yticks(np.arange(len(scenarios)), [f"{s} ({r}/class)" for s, r in scenarios])
    ax.tick_params(axis="y", labelsize="small")
    ax.set_title(f"{net}: unit picked per scenario")
    ax.legend(loc="upper left", bbox_to_anchor=(0, -0.6 / max(len(scenarios), 1) - 0.02),
              ncol=len(methods), fontsize="small", frameon=False)
    return ax


def _pick(row, method, fast_ignores_all):
    """The unit a run picked: fast's proxy choice when ignoring its ft-all fallback."""
    if method == "fast" and fast_ignores_all and row.get("proxy_scores"):
        # fast's proxy choice: the ranking rule, ties broken by the proxies' losses
        return best_key(row["proxy_scores"], row.get("proxy_losses"))
    return row["selected_unit"]


@validate_params(
    {"output": [str, os.PathLike], "log": [callable, None]},
    prefer_skip_nested_validation=True,
)
def write_figures(output, *, log=print):
    """Write the paper-style figures of the ``flexsk bench`` results in ``output``.

    Per net: ``fig1_<net>.png`` (:func:`unit_scores_figure`, per-unit
    validation and test accuracy, Figure 1 style; for nets with flex rows)
    and ``fig2_<net>.png`` (:func:`plot_selection_heatmap`, which unit each
    method picks, Figure 2 style), each written all at once, drawn with
    matplotlib's non-interactive ``"Agg"`` backend, which this function
    selects. The tables are written by :func:`flexsk.bench.write_reports`;
    ``flexsk bench`` calls both.

    Parameters
    ----------
    output : str or path-like
        The directory of ``results.csv``; the figures are written next to it.
    log : callable or None, default=print
        Called with the list of files written; None is silent.

    Returns
    -------
    list of pathlib.Path
        The files written.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    flexsk.bench.BenchError
        If ``output`` holds no finished runs.

    Examples
    --------
    >>> from flexsk.plot import write_figures
    >>> paths = write_figures("docs/_static/bench", log=None)  # doctest: +SKIP
    """
    plt = _pyplot()
    plt.switch_backend("Agg")  # files only: no window, whatever the default backend
    rows = read_results(Path(output) / RESULTS_CSV)
    if not rows:
        raise BenchError(f"{Path(output) / RESULTS_CSV} holds no finished runs yet.")
    written = []
    for net in dict.fromkeys(r["net"] for r in rows):
        if any(r["net"] == net and r["strategy"] == "flex" for r in rows):
            fig = unit_scores_figure(rows, net=net)
            written.append(_save(fig, Path(output) / f"fig1_{net}.png"))
            plt.close(fig)
        n_scenarios = len({(r["n_channels"], r["shift"], r["ratio"]) for r in rows
                           if r["net"] == net})
        fig, ax = plt.subplots(figsize=(7, 1.2 + 0.28 * n_scenarios), layout="constrained")
        plot_selection_heatmap(rows, net=net, ax=ax)
        written.append(_save(fig, Path(output) / f"fig2_{net}.png"))
        plt.close(fig)
    if log is not None:
        log("Wrote " + ", ".join(str(p) for p in written))
    return written


def _save(fig, path):
    with atomic_write(path) as f:
        fig.savefig(f, dpi=110, format="png")
    return path

"""Figures of flex-tuning: per-unit scores and unit-selection heat maps.

The functions draw with matplotlib, an optional dependency
(``pip install "flexsk[plot]"``), imported only when a function is called.
:class:`UnitScoresDisplay` draws per-unit scores the scikit-learn way (as
:class:`sklearn.metrics.ConfusionMatrixDisplay` does): built from a fitted
tuner or from results, it keeps the values it draws and the lines it drew.
:func:`plot_unit_scores` (which uses it) and :func:`plot_selection_heatmap`
draw on a given Axes (or a new one) and return it; :func:`unit_scores_figure`
makes a Figure of several panels and returns it.

:func:`write_figures` writes the figures of a ``flexsk bench`` results
directory as PNG files.

They read either a fitted :class:`~flexsk.FlexTuner` or a *results table*:
the rows of the CSV written by ``flexsk bench`` (a path to it, or a list of
dicts such as :func:`flexsk.bench.read_results` returns; raw CSV strings are
parsed). No pandas needed.
"""

import os
from collections import Counter, defaultdict
from collections.abc import Mapping
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

__all__ = ["UnitScoresDisplay", "plot_unit_scores", "plot_selection_heatmap",
           "unit_scores_figure", "write_figures"]

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


def _is_estimator(obj):
    return hasattr(obj, "fit") and hasattr(obj, "get_params")


def _check_results(results, caller):
    """Refuse what is not bench results (a fitted tuner above all), saying what is taken."""
    if isinstance(results, (str, os.PathLike)):
        return
    if _is_estimator(results):
        got = f"a {type(results).__name__}"
    else:
        for i, row in enumerate(results):
            if _is_estimator(row):
                got = f"a {type(results).__name__} holding a {type(row).__name__} (at index {i})"
                break
            if not isinstance(row, Mapping):
                raise TypeError(
                    f"{caller} draws bench results: results rows (dicts, e.g. "
                    f"flexsk.bench.read_results(path)) or the path of a results CSV; got a "
                    f"{type(results).__name__} holding a {type(row).__name__} (at index {i}).")
        else:
            return
    raise TypeError(
        f"{caller} draws bench results: results rows (dicts, e.g. "
        f"flexsk.bench.read_results(path)) or the path of a results CSV; got {got}. For a "
        f"fitted tuner, pass the tuner itself: UnitScoresDisplay.from_estimator(tuner) or "
        f"plot_unit_scores(tuner).")


def _results(results, caller):
    _check_results(results, caller)
    if isinstance(results, (str, os.PathLike)):
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


class UnitScoresDisplay:
    """Validation (solid) and test (dashed) scores of tuning each single unit.

    The paper's Figure 1, as a scikit-learn Display: it keeps the values it
    draws, :meth:`plot` draws them and keeps the lines. Build one with
    :meth:`from_estimator` (a fitted :class:`~flexsk.FlexTuner`) or
    :meth:`from_results` (the results of ``flexsk bench``), which compute
    the values and plot them, or by hand from the values, then call
    :meth:`plot`. :func:`plot_unit_scores` does the same in one call.

    The values come in *series*: one line of validation scores per series
    (with, optionally, a dashed line of test scores and a triangle on the
    candidate picked), all over the same candidates. One fitted tuner is one
    series; results give one series per training-set size (ratio). Each
    parameter is kept as the attribute of the same name, per series (see
    Attributes).

    Parameters
    ----------
    keys : list of str
        The candidates, one per x position and tick label: tuned units in
        forward order, then ``"all"`` (tuple keys are joined with ``+``).
    validation_scores : array-like of shape (n_series, n_keys) or (n_keys,)
        Validation score (accuracy) of each candidate, per series (a 1-D array is
        one series); NaN where unknown.
    test_scores : list of (array-like of shape (n_keys,) or None), default=None
        Test score of each candidate, per series, drawn dashed; None (or
        a None entry) draws no test line (for that series). For one series
        given as a 1-D ``validation_scores``: that series' array, or None.
    selected : list of (str or None), default=None
        The candidate picked in each series, marked with a triangle on its
        validation score when it is one of ``keys``. For one series given as
        a 1-D ``validation_scores``: that pick, a str or None.
    labels : list of str, default=None
        The legend entry of each series: each series is drawn in its own
        colour (viridis), as for results, and the legend's title says that
        solid lines are validation and dashed ones test. None (one series
        only) draws one fit, as for a tuner: blue lines labelled
        ``"validation"`` and ``"test"`` and a red triangle labelled
        ``"selected: <key>"``.
    title : str, default=None
        The title of the Axes; None sets none.
    score_name : str, default="accuracy"
        What the scores are: the y-axis label (a tuner fitted with
        ``scoring`` gives its name).

    Attributes
    ----------
    keys : list of str
        The candidates, as text.
    validation_scores : ndarray of shape (n_series, n_keys)
        The validation scores, one row per series.
    test_scores : list of (ndarray of shape (n_keys,) or None) or None
        The test scores of each series, or None for none at all.
    selected : list of (str or None)
        The pick of each series.
    labels : list of str or None
        The legend entry of each series; None for one fit.
    title : str or None
        The title.
    score_name : str
        The y-axis label.
    lines_ : list of matplotlib Line2D
        Every line drawn, in order: per series its validation line, its test
        line (if any) and its selection marker (if any). Set by :meth:`plot`.
    validation_lines_ : list of matplotlib Line2D
        The validation line of each series.
    test_lines_ : list of (matplotlib Line2D or None)
        The test line of each series; None where it has no test scores.
    selected_markers_ : list of (matplotlib Line2D or None)
        The triangle of each series; None where its pick is not drawn.
    ax_ : matplotlib Axes
        The Axes drawn on.
    figure_ : matplotlib Figure
        The Figure of ``ax_``.

    See Also
    --------
    plot_unit_scores : The same figure in one call; returns the Axes.
    unit_scores_figure : One panel per shift of a results table.
    sklearn.model_selection.LearningCurveDisplay : The Display convention.

    Examples
    --------
    By hand, the scores of one fit:

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from flexsk.plot import UnitScoresDisplay
    >>> keys = ["conv1", "conv2", "fc1", "fc2", "all"]
    >>> display = UnitScoresDisplay(keys, [0.70, 0.84, 0.86, 0.80, 0.85],
    ...                             test_scores=[0.68, 0.80, 0.85, 0.81, 0.83],
    ...                             selected="fc1", title="by hand")
    >>> display = display.plot()
    >>> len(display.lines_)  # validation, test, selection marker
    3
    >>> display.ax_.get_title()
    'by hand'

    From a fitted tuner, with the test accuracy of each kept candidate:

    >>> from flexsk import FlexTuner
    >>> from flexsk.datasets import make_digits_shift
    >>> from flexsk.zoo import load_source_net
    >>> b = make_digits_shift("blur", image_size=8)
    >>> X, y, split = b.data, b.target, b.split
    >>> tuner = FlexTuner(load_source_net("conv4", image_size=8), strategy="flex",
    ...                   keep_candidates=True, max_epochs=2, random_state=0)
    >>> tuner = tuner.fit(X[split == "train"], y[split == "train"],
    ...                   X_val=X[split == "val"], y_val=y[split == "val"])
    >>> display = UnitScoresDisplay.from_estimator(tuner, X[split == "test"],
    ...                                            y[split == "test"])
    >>> display.keys == tuner.units_ + ["all"]
    True
    >>> display.selected == [tuner.selected_unit_]
    True

    From a results table (rows as :func:`flexsk.bench.read_results` gives
    them), one series per ratio:

    >>> units = ["conv1", "conv2", "fc1", "fc2"]
    >>> scores = {"conv1": 0.70, "conv2": 0.84, "fc1": 0.86, "fc2": 0.80, "all": 0.85}
    >>> rows = [dict(net="conv4", shift="blur", ratio=ratio, strategy="flex", units=units,
    ...              selected_unit="fc1", validation_scores=scores,
    ...              candidate_test_scores=scores)
    ...         for ratio in [2, 10]]
    >>> display = UnitScoresDisplay.from_results(rows)
    >>> display.labels, display.validation_scores.shape
    (['2/class', '10/class'], (2, 5))

    The results of a ``flexsk bench`` run:

    >>> display = UnitScoresDisplay.from_results("bench-results/results.csv",
    ...                                          net="conv7", shift="blur")  # doctest: +SKIP
    """

    def __init__(self, keys, validation_scores, *, test_scores=None, selected=None,
                 labels=None, title=None, score_name="accuracy"):
        self.keys = [key_name(k) for k in keys]
        self.score_name = str(score_name)
        validation = np.asarray(validation_scores, dtype=float)
        if validation.ndim == 1:  # one series
            validation = validation[np.newaxis]
            test_scores = None if test_scores is None else [test_scores]
            selected = [selected]
        if validation.ndim != 2:
            raise ValueError(f"validation_scores must be of shape (n_series, n_keys) or "
                             f"(n_keys,); got shape {validation.shape}.")
        n_series, n_keys = validation.shape
        if n_keys != len(self.keys):
            raise ValueError(f"validation_scores has {n_keys} scores per series for "
                             f"{len(self.keys)} keys.")
        self.validation_scores = validation
        if test_scores is not None:
            test_scores = [None if t is None else np.asarray(t, dtype=float)
                           for t in test_scores]
            if len(test_scores) != n_series:
                raise ValueError(f"test_scores has {len(test_scores)} series; "
                                 f"validation_scores has {n_series}.")
            for t in test_scores:
                if t is not None and t.shape != (n_keys,):
                    raise ValueError(f"each series of test_scores needs one score per key "
                                     f"({n_keys}); got shape {t.shape}.")
        self.test_scores = test_scores
        if isinstance(selected, str):
            raise ValueError(f"selected={selected!r}: pass one pick per series, a list.")
        selected = [None] * n_series if selected is None else list(selected)
        if len(selected) != n_series:
            raise ValueError(f"selected has {len(selected)} picks for {n_series} series.")
        self.selected = [None if s is None else key_name(s) for s in selected]
        if labels is None:
            if n_series != 1:
                raise ValueError(f"labels=None draws one fit, but there are {n_series} "
                                 f"series: pass one label per series.")
        else:
            labels = [str(label) for label in labels]
            if len(labels) != n_series:
                raise ValueError(f"labels has {len(labels)} entries for {n_series} series.")
        self.labels = labels
        self.title = title

    @classmethod
    @validate_params(
        {
            "estimator": "no_validation",  # checked below, with a pointer to from_results
            "X": "no_validation",  # the tuner validates its input
            "y": "no_validation",
            "include_all": ["boolean"],
            "ax": [HasMethods(["plot"]), None],
        },
        prefer_skip_nested_validation=False,
    )
    def from_estimator(cls, estimator, X=None, y=None, *, include_all=True, ax=None):
        """Draw the scores of each candidate of a fitted tuner.

        One series: the ``validation_scores_`` of the tuner's single-unit
        candidates in forward order (then ``"all"``), the test score of
        each (:meth:`~flexsk.FlexTuner.score_candidates`, by the tuner's
        ``scoring``) when ``X`` is given, and a triangle on
        ``selected_unit_``.

        Parameters
        ----------
        estimator : FlexTuner
            A fitted tuner, best with ``strategy="flex"`` (which tries every
            unit) and, for test scores, ``keep_candidates=True``.
        X : array-like, torch.Tensor or Dataset, default=None
            Test inputs, as for :meth:`~flexsk.FlexTuner.score_candidates`;
            None draws no test line.
        y : array-like of shape (n_samples,), default=None
            Their labels (None when ``X`` is a Dataset of ``(x, y)`` pairs).
        include_all : bool, default=True
            Also draw the ``"all"`` candidate (ft-all), as the last point.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure by default.

        Returns
        -------
        display : UnitScoresDisplay
            The values drawn and the lines.

        Raises
        ------
        TypeError
            If ``estimator`` is not a fitted FlexTuner (for results, use
            :meth:`from_results`).
        ValueError
            If the tuner tried no single unit, or if ``X`` is given but the
            tuner kept no candidates.
        """
        _pyplot()
        if not _is_estimator(estimator):
            raise TypeError(
                f"UnitScoresDisplay.from_estimator takes a fitted FlexTuner; got a "
                f"{type(estimator).__name__}. For bench results (results rows or the path "
                f"of a results CSV), use UnitScoresDisplay.from_results(results).")
        return cls(**_tuner_values(estimator, X, y, include_all)).plot(ax=ax)

    @classmethod
    @validate_params(
        {
            # a fitted tuner is let through, to be refused with a pointer to from_estimator
            "results": [HasMethods(["fit", "get_params"]), list, tuple, str, os.PathLike],
            "net": [str, None],
            "shift": [str, None],
            "ratios": ["array-like", None],
            "include_all": ["boolean"],
            "ax": [HasMethods(["plot"]), None],
        },
        prefer_skip_nested_validation=True,
    )
    def from_results(cls, results, *, net=None, shift=None, ratios=None, include_all=True,
                     ax=None):
        """Draw the mean scores of each candidate in the results of ``flexsk bench``.

        The ``"flex"`` rows of one net and shift: one series per ratio, in
        its own colour, with the mean over repeats of the validation (solid)
        and test (dashed) accuracies, and a triangle on the candidate flex
        picks most often at that ratio.

        Parameters
        ----------
        results : list of dict, str or path-like
            Results rows (such as :func:`flexsk.bench.read_results` returns)
            or the path of a results CSV.
        net, shift : str, default=None
            Which scenario of the results to draw; needed when the results
            hold several.
        ratios : list of int, default=None
            Ratios to draw (default: all in the results).
        include_all : bool, default=True
            Also draw the ``"all"`` candidate (ft-all), as the last point.
        ax : matplotlib Axes, default=None
            Where to draw; a new figure by default.

        Returns
        -------
        display : UnitScoresDisplay
            The values drawn and the lines.

        Raises
        ------
        TypeError
            If ``results`` is a fitted tuner, or holds one (use
            :meth:`from_estimator`).
        ValueError
            If the results hold no flex rows, or not the scenario asked for.
        """
        _pyplot()
        rows = _results(results, "UnitScoresDisplay.from_results")
        return cls(**_results_values(rows, net, shift, ratios, include_all)).plot(ax=ax)

    def plot(self, ax=None):
        """Draw the scores.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw; a new figure by default.

        Returns
        -------
        display : UnitScoresDisplay
            This display, with ``lines_``, ``validation_lines_``,
            ``test_lines_``, ``selected_markers_``, ``ax_`` and ``figure_``
            set.
        """
        ax = _axes(ax)
        one_fit = self.labels is None
        n_series = len(self.validation_scores)
        if one_fit:
            colours = ["tab:blue"]
        else:
            colours = _pyplot().get_cmap("viridis")(np.linspace(0.0, 0.85, max(n_series, 1)))
        x = np.arange(len(self.keys))
        tests = self.test_scores if self.test_scores is not None else [None] * n_series
        self.lines_, self.validation_lines_, self.test_lines_ = [], [], []
        self.selected_markers_ = []
        for i, (colour, val, test, pick) in enumerate(zip(colours, self.validation_scores,
                                                          tests, self.selected)):
            if one_fit:
                (line,) = ax.plot(x, val, "-o", color=colour, label="validation")
            else:
                (line,) = ax.plot(x, val, "-o", color=colour, markersize=4,
                                  label=self.labels[i])
            self.validation_lines_.append(line)
            self.lines_.append(line)
            line = None
            if test is not None:
                if one_fit:
                    (line,) = ax.plot(x, test, "--o", color=colour, label="test",
                                      markerfacecolor="none")
                else:
                    (line,) = ax.plot(x, test, "--", color=colour)
                self.lines_.append(line)
            self.test_lines_.append(line)
            line = None
            if pick in self.keys and np.isfinite(val[self.keys.index(pick)]):
                j = self.keys.index(pick)
                if one_fit:
                    (line,) = ax.plot([j], [val[j]], "v", color="tab:red", markersize=12,
                                      markeredgecolor="black", label=f"selected: {pick}")
                else:
                    (line,) = ax.plot([j], [val[j]], "v", color=colour, markersize=11,
                                      markeredgecolor="black")
                self.lines_.append(line)
            self.selected_markers_.append(line)
        ax.set_xticks(x, self.keys)
        ax.set_xlabel("tuned unit")
        if self.title is not None:
            ax.set_title(self.title)
        if one_fit:
            ax.legend(fontsize="small")
        else:
            ax.legend(fontsize="x-small", title="solid: val, dashed: test",
                      title_fontsize="x-small")
        ax.set_ylabel(self.score_name)
        ax.grid(alpha=0.3)
        self.ax_ = ax
        self.figure_ = ax.figure
        return self


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

    A shortcut for :meth:`UnitScoresDisplay.from_estimator` and
    :meth:`UnitScoresDisplay.from_results`, which also keep the values drawn.

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
    TypeError
        If results rows hold a fitted tuner (pass the tuner itself).

    See Also
    --------
    UnitScoresDisplay : The same figure, keeping the values it draws.

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
    if _is_estimator(tuner_or_results):
        display = UnitScoresDisplay.from_estimator(tuner_or_results, X_test, y_test,
                                                   include_all=include_all, ax=ax)
    else:
        _check_results(tuner_or_results, "plot_unit_scores")
        display = UnitScoresDisplay.from_results(tuner_or_results, net=net, shift=shift,
                                                 ratios=ratios, include_all=include_all,
                                                 ax=ax)
    return display.ax_


def _candidate_keys(units, available, include_all):
    keys = [u for u in units if u in available]
    if include_all and "all" in available:
        keys.append("all")
    return keys


def _tuner_values(tuner, X, y, include_all):
    """The constructor arguments of UnitScoresDisplay for a fitted tuner."""
    check_is_fitted(tuner)
    missing = [a for a in ("units_", "validation_scores_", "selected_unit_")
               if not hasattr(tuner, a)]
    if missing:
        raise TypeError(f"UnitScoresDisplay.from_estimator takes a fitted FlexTuner; the "
                        f"{type(tuner).__name__} has no {', '.join(missing)}.")
    val = {key_name(k): v for k, v in tuner.validation_scores_.items()}
    keys = _candidate_keys(tuner.units_, val, include_all)
    if not keys:
        raise ValueError(f"the tuner has no single-unit candidates to plot (strategy="
                         f"{tuner.strategy!r}); use strategy='flex'.")
    test = None
    if X is not None:
        if not tuner.keep_candidates:
            raise ValueError("test scores need the candidates: fit the tuner with "
                             "keep_candidates=True.")
        scored = tuner.score_candidates(X, y, scoring=getattr(tuner, "scoring", None))
        scores = {key_name(k): v for k, v in scored.items()}
        test = [scores[k] for k in keys]
    scoring = getattr(tuner, "scoring", None)
    return dict(keys=keys, validation_scores=[val[k] for k in keys], test_scores=test,
                selected=key_name(tuner.selected_unit_), labels=None,
                title=f"FlexTuner({tuner.strategy})",
                score_name="accuracy" if scoring is None else _scoring_name(scoring))


def _scoring_name(scoring):
    """How a ``scoring`` reads on an axis: its name, or the scorer's repr."""
    return scoring if isinstance(scoring, str) else getattr(scoring, "__name__", repr(scoring))


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


def _results_values(rows, net, shift, ratios, include_all):
    """The constructor arguments of UnitScoresDisplay for one scenario of results rows."""
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
    groups = [[r for r in flex if r["ratio"] == ratio] for ratio in ratios]
    vals = [_mean_scores(group, "validation_scores") for group in groups]
    tests = [_mean_scores(group, "candidate_test_scores") for group in groups]
    # One x axis for every ratio: the candidates any of them holds (all, as a rule).
    keys = _candidate_keys(units, {k for val in vals for k in val}, include_all)
    selected = []
    for group, val in zip(groups, vals):
        picks = Counter(r["selected_unit"] for r in group)
        own = _candidate_keys(units, val, include_all)
        selected.append(max(picks, key=lambda k: (picks[k], -_position(own, k))))
    return dict(
        keys=keys,
        validation_scores=np.array([[val.get(k, np.nan) for k in keys] for val in vals],
                                   dtype=float).reshape(len(groups), len(keys)),
        test_scores=[[test.get(k, np.nan) for k in keys] for test in tests],
        selected=selected,
        labels=[f"{ratio}/class" + (f" ({len(group)} runs)" if len(group) > 1 else "")
                for ratio, group in zip(ratios, groups)],
        title=f"{net}: {shift}" + (" (3ch)" if flex[0].get("n_channels") == 3 else ""))


def _position(keys, key):
    return keys.index(key) if key in keys else len(keys)


@validate_params(
    {
        # a fitted tuner is let through, to be refused with a pointer to plot_unit_scores
        "results": [HasMethods(["fit", "get_params"]), list, tuple, str, os.PathLike],
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
        Results rows (such as :func:`flexsk.bench.read_results` returns) or
        the path of a results CSV.
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
        One Axes per shift, drawn by :meth:`UnitScoresDisplay.from_results`.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    TypeError
        If ``results`` is a fitted tuner, or holds one: draw a tuner with
        :meth:`UnitScoresDisplay.from_estimator` or :func:`plot_unit_scores`.

    See Also
    --------
    plot_unit_scores : One panel, for a results table or a fitted tuner.
    UnitScoresDisplay : One panel, keeping the values it draws.

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
    rows = _flex_rows(_results(results, "unit_scores_figure"))
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
        UnitScoresDisplay.from_results(rows, net=net, shift=shift, include_all=include_all,
                                       ax=ax)
        ax.tick_params(axis="x", labelsize="x-small", rotation=45)
        ax.set_xlabel("")
    for ax in list(axes.flat)[len(shifts):]:
        ax.set_visible(False)
    fig.suptitle(f"{net}: validation (solid) and test (dashed) accuracy of tuning each "
                 f"unit; triangle = flex's most frequent pick")
    return fig


@validate_params(
    {
        # a fitted tuner is let through, to be refused with a pointer to plot_unit_scores
        "results": [HasMethods(["fit", "get_params"]), list, tuple, str, os.PathLike],
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
        Results rows (such as :func:`flexsk.bench.read_results` returns) or
        the path of a results CSV.
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
    TypeError
        If ``results`` is a fitted tuner, or holds one: draw a tuner with
        :meth:`UnitScoresDisplay.from_estimator` or :func:`plot_unit_scores`.

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
    rows = _results(results, "plot_selection_heatmap")
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

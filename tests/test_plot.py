"""flexsk.plot: per-unit score lines and selection heat maps (matplotlib, Agg)."""

import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from flexsk import FlexTuner  # noqa: E402
from flexsk.plot import (UnitScoresDisplay, plot_selection_heatmap,  # noqa: E402
                         plot_unit_scores, unit_scores_figure)

UNITS = ["conv1", "conv2", "fc1", "fc2"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _row(strategy, shift, ratio, repeat, *, val=None, test=None, selected=None, proxy=None,
         net="conv4"):
    val = val or {}
    return dict(net=net, n_channels=1, shift=shift, ratio=ratio, repeat=repeat,
                strategy=strategy, test_accuracy=0.5, source_accuracy=0.4,
                refit_test_accuracy=0.55, map_at_10=0.3, source_map_at_10=0.2,
                selected_unit=selected, units=UNITS, proxy_scores=proxy or {},
                validation_scores=val, candidate_test_scores=test or val, n_epochs={})


def _flex(shift, ratio, repeat, val, test, selected):
    keys = UNITS + ["all"]
    return _row("flex", shift, ratio, repeat, val=dict(zip(keys, val)),
                test=dict(zip(keys, test)), selected=selected,
                proxy=dict(zip(UNITS, val[:4])))


def _results():
    return [
        # blur, ratio 2: two repeats; conv2 picked twice; mean val 0.7 at conv2.
        _flex("blur", 2, 0, [0.5, 0.8, 0.6, 0.4, 0.7], [0.5, 0.6, 0.9, 0.4, 0.7], "conv2"),
        _flex("blur", 2, 1, [0.5, 0.6, 0.5, 0.4, 0.5], [0.5, 0.8, 0.7, 0.4, 0.5], "conv2"),
        # blur, ratio 10: flex returns ft-all.
        _flex("blur", 10, 0, [0.6, 0.7, 0.8, 0.5, 0.9], [0.6, 0.7, 0.8, 0.5, 0.95], "all"),
        # noise, ratio 2.
        _flex("noise", 2, 0, [0.9, 0.8, 0.7, 0.6, 0.5], [0.9, 0.8, 0.7, 0.6, 0.5], "conv1"),
        # fast falls back to ft-all in blur r10, after its proxies chose fc1.
        _row("fast", "blur", 10, 0, val={"fc1": 0.8, "all": 0.9}, selected="all",
             proxy={"conv1": 0.1, "conv2": 0.3, "fc1": 0.5, "fc2": 0.5}),
        _row("faster", "blur", 2, 0, val={"fc2": 0.5}, selected="fc2",
             proxy={"conv1": 0.1, "conv2": 0.2, "fc1": 0.1, "fc2": 0.3}),
        _row("faster", "blur", 2, 1, val={"fc1": 0.5}, selected="fc1",
             proxy={"conv1": 0.1, "conv2": 0.2, "fc1": 0.4, "fc2": 0.3}),
        _row("ft-all", "blur", 2, 0, val={"all": 0.7}, selected="all"),
    ]


def test_unit_scores_from_results_one_line_pair_and_marker_per_ratio():
    ax = plot_unit_scores(_results(), shift="blur")
    assert len(ax.lines) == 6  # per ratio: validation, test, pick marker
    val2, test2, pick2, val10, test10, pick10 = ax.lines
    assert [line.get_linestyle() for line in (val2, test2, val10, test10)] == [
        "-", "--", "-", "--"]
    np.testing.assert_allclose(val2.get_ydata(), [0.5, 0.7, 0.55, 0.4, 0.6])
    np.testing.assert_allclose(test2.get_ydata(), [0.5, 0.7, 0.8, 0.4, 0.6])
    assert list(pick2.get_xdata()) == [1] and list(pick2.get_ydata()) == [pytest.approx(0.7)]
    assert list(pick10.get_xdata()) == [4]  # "all", the last point
    assert [t.get_text() for t in ax.get_xticklabels()] == UNITS + ["all"]
    colour = matplotlib.colors.to_hex
    assert colour(val2.get_color()) == colour(test2.get_color()) != colour(val10.get_color())


def test_unit_scores_from_results_without_all_and_one_ratio():
    ax = plot_unit_scores(_results(), shift="blur", ratios=[10], include_all=False)
    assert len(ax.lines) == 2  # flex picked "all", which is not drawn
    assert len(ax.lines[0].get_xdata()) == 4


def test_unit_scores_needs_the_scenario_when_ambiguous():
    with pytest.raises(ValueError, match="several shifts"):
        plot_unit_scores(_results())
    with pytest.raises(ValueError, match="no results for shift='rotation'"):
        plot_unit_scores(_results(), shift="rotation")


def test_unit_scores_reads_a_csv(tmp_path):
    import csv
    import json

    from flexsk.bench import COLUMNS

    path = tmp_path / "results.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in _results():
            writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v
                             for k, v in row.items()})
    ax = plot_unit_scores(path, shift="noise")
    assert len(ax.lines) == 3
    assert list(ax.lines[2].get_xdata()) == [0]


def test_unit_scores_of_a_fitted_tuner(conv4, target):
    tuner = FlexTuner(conv4, strategy="flex", keep_candidates=True, max_epochs=2,
                      random_state=0)
    tuner.fit(target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])
    _, ax = plt.subplots()
    assert plot_unit_scores(tuner, X_test=target["X_test"], y_test=target["y_test"],
                            ax=ax) is ax
    val, test, marker = ax.lines
    assert (val.get_linestyle(), test.get_linestyle()) == ("-", "--")
    keys = tuner.units_ + ["all"]
    np.testing.assert_allclose(val.get_ydata(), [tuner.validation_scores_[k] for k in keys])
    scores = tuner.score_candidates(target["X_test"], target["y_test"])
    np.testing.assert_allclose(test.get_ydata(), [scores[k] for k in keys])
    assert list(marker.get_xdata()) == [keys.index(tuner.selected_unit_)]

    assert len(plot_unit_scores(tuner).lines) == 2  # no test data: no dashed line


def test_unit_scores_of_a_tuner_without_candidates(conv4, target):
    tuner = FlexTuner(conv4, strategy="flex", max_epochs=1, random_state=0)
    tuner.fit(target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])
    with pytest.raises(ValueError, match="keep_candidates=True"):
        plot_unit_scores(tuner, X_test=target["X_test"], y_test=target["y_test"])


def test_selection_heatmap_background_and_markers():
    ax = plot_selection_heatmap(_results())
    assert len(ax.images) == 1 and len(ax.collections) == 3
    ranks = ax.images[0].get_array()
    # Rows: blur r2, blur r10, noise r2. Mean test of blur r2: .5 .7 .8 .4 .6
    np.testing.assert_allclose(ranks[0], [4, 2, 1, 5, 3])
    np.testing.assert_allclose(ranks[1], [4, 3, 2, 5, 1])
    np.testing.assert_allclose(ranks[2], [1, 2, 3, 4, 5])
    flex, fast, faster = ax.collections
    np.testing.assert_allclose(flex.get_offsets(), [[1 - 0.25, 0], [4 - 0.25, 1],
                                                    [0 - 0.25, 2]])
    np.testing.assert_allclose(fast.get_offsets(), [[2, 1]])  # its proxies' pick, fc1
    np.testing.assert_allclose(faster.get_offsets(), [[3.25, 0], [2.25, 0]])
    # Two repeats picked conv2: the largest marker; faster's split picks are smaller.
    assert flex.get_sizes()[0] > faster.get_sizes()[0] == faster.get_sizes()[1]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "blur (2/class)", "blur (10/class)", "noise (2/class)"]


def test_selection_heatmap_options():
    ax = plot_selection_heatmap(_results(), methods=["fast"], fast_ignores_all=False,
                                include_all=True)
    (fast,) = ax.collections
    np.testing.assert_allclose(fast.get_offsets(), [[4, 1]])  # the returned ft-all
    ax = plot_selection_heatmap(_results(), include_all=False)
    assert ax.images[0].get_array().shape == (3, 4)
    assert len(ax.collections[0].get_offsets()) == 2  # flex's "all" pick is off the map


def test_selection_heatmap_needs_a_net_when_several():
    rows = _results() + [_row("flex", "blur", 2, 0, net="conv7", selected="fc1")]
    with pytest.raises(ValueError, match="several nets"):
        plot_selection_heatmap(rows)
    assert plot_selection_heatmap(rows, net="conv4").images


def test_unit_scores_figure_has_a_panel_per_shift():
    fig = unit_scores_figure(_results(), ncols=5)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["conv4: blur", "conv4: noise"]


def test_missing_matplotlib_says_how_to_install(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r'pip install "flexsk\[plot\]"'):
        plot_selection_heatmap(_results())
    with pytest.raises(ImportError, match=r'pip install "flexsk\[plot\]"'):
        plot_unit_scores(_results(), shift="noise")


@pytest.mark.parametrize("call, message", [
    (lambda: plot_selection_heatmap([]), "no rows to plot"),
    (lambda: unit_scores_figure([]), "no 'flex' rows"),
    (lambda: unit_scores_figure([r for r in _results() if r["strategy"] != "flex"]),
     "no 'flex' rows"),
    (lambda: unit_scores_figure(_results(), shifts=[]), "shifts is empty"),
    (lambda: unit_scores_figure(_results(), ncols=0), r"'ncols' parameter.*range \[1, inf\)"),
    (lambda: plot_selection_heatmap([{k: v for k, v in r.items() if k != "units"}
                                     for r in _results()]), "no 'units' column"),
    (lambda: plot_unit_scores(_results(), shift="blur", ratios=[99]), r"ratios \[99\]"),
])
def test_bad_results_get_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_plotted_fast_pick_breaks_ties_by_loss_as_fast_does(conv4, target):
    from flexsk.plot import _pick

    # two proxies tie on accuracy; the later one has the lower loss and is fast's pick
    row = dict(strategy="fast", selected_unit="all",
               proxy_scores={"conv1": 0.5, "conv2": 0.8, "fc1": 0.8, "fc2": 0.7},
               proxy_losses={"conv1": 1.0, "conv2": 0.6, "fc1": 0.5, "fc2": 0.9})
    assert _pick(row, "fast", fast_ignores_all=True) == "fc1"
    assert _pick(row, "fast", fast_ignores_all=False) == "all"
    tuner = FlexTuner(conv4, strategy="fast", max_epochs=3, random_state=0).fit(
        target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])
    tuned_unit = next(key for key in tuner.validation_scores_ if key != "all")
    fitted = dict(strategy="fast", selected_unit=tuner.selected_unit_,
                  proxy_scores=tuner.proxy_scores_, proxy_losses=tuner.proxy_losses_)
    assert _pick(fitted, "fast", fast_ignores_all=True) == tuned_unit
    assert _pick(fitted, "fast", fast_ignores_all=False) == tuner.selected_unit_


# -- UnitScoresDisplay -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def flex_tuner(_conv4, target):
    """A fitted flex tuner that kept its candidates (shared: tests only read it)."""
    import copy
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the short training warns it stopped early
        return FlexTuner(copy.deepcopy(_conv4), strategy="flex", keep_candidates=True,
                         max_epochs=2, random_state=0).fit(
            target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])


def _legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_display_from_estimator_keeps_what_it_draws(flex_tuner):
    tuner = flex_tuner
    display = UnitScoresDisplay.from_estimator(tuner)
    keys = tuner.units_ + ["all"]
    assert display.keys == keys
    np.testing.assert_allclose(display.validation_scores,
                               [[tuner.validation_scores_[k] for k in keys]])
    assert display.test_scores is None and display.labels is None
    assert display.selected == [tuner.selected_unit_]
    assert display.title == "FlexTuner(flex)"
    ax = display.ax_
    assert display.figure_ is ax.figure
    assert display.lines_ == list(ax.lines) == [display.validation_lines_[0],
                                                display.selected_markers_[0]]
    assert display.test_lines_ == [None]
    np.testing.assert_allclose(display.validation_lines_[0].get_ydata(),
                               display.validation_scores[0])
    assert list(display.selected_markers_[0].get_xdata()) == [keys.index(tuner.selected_unit_)]
    assert [t.get_text() for t in ax.get_xticklabels()] == keys
    assert _legend_texts(ax) == ["validation", f"selected: {tuner.selected_unit_}"]
    # .plot() draws the stored values again, on a new figure, and returns the display.
    assert display.plot() is display
    assert display.ax_ is not ax and len(display.ax_.lines) == 2
    np.testing.assert_allclose(display.ax_.lines[0].get_ydata(), ax.lines[0].get_ydata())


def test_display_from_estimator_with_test_data(flex_tuner, target):
    tuner = flex_tuner
    display = UnitScoresDisplay.from_estimator(tuner, target["X_test"], target["y_test"])
    keys = tuner.units_ + ["all"]
    scores = tuner.score_candidates(target["X_test"], target["y_test"])
    assert len(display.test_scores) == 1
    np.testing.assert_allclose(display.test_scores[0], [scores[k] for k in keys])
    val, test, marker = display.lines_
    assert display.test_lines_ == [test] and display.selected_markers_ == [marker]
    assert (val.get_linestyle(), test.get_linestyle()) == ("-", "--")
    np.testing.assert_allclose(test.get_ydata(), display.test_scores[0])
    assert _legend_texts(display.ax_) == ["validation", "test",
                                          f"selected: {tuner.selected_unit_}"]
    # the same lines as plot_unit_scores draws
    ax = plot_unit_scores(tuner, X_test=target["X_test"], y_test=target["y_test"])
    assert len(display.lines_) == len(ax.lines)
    for ours, theirs in zip(display.lines_, ax.lines):
        np.testing.assert_allclose(ours.get_ydata(), theirs.get_ydata())
        assert ours.get_linestyle() == theirs.get_linestyle()

    display = UnitScoresDisplay.from_estimator(tuner, target["X_test"], target["y_test"],
                                               include_all=False)
    assert display.keys == tuner.units_ and display.validation_scores.shape == (1, len(keys) - 1)


def test_display_from_estimator_without_candidates_or_tuner(conv4, target):
    import warnings

    from sklearn.dummy import DummyClassifier
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        UnitScoresDisplay.from_estimator(FlexTuner(conv4))
    tuner = FlexTuner(conv4, strategy="flex", max_epochs=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the short training warns it stopped early
        tuner.fit(target["X"], target["y"], X_val=target["X_val"], y_val=target["y_val"])
    with pytest.raises(ValueError, match="keep_candidates=True"):
        UnitScoresDisplay.from_estimator(tuner, target["X_test"], target["y_test"])
    assert len(UnitScoresDisplay.from_estimator(tuner).lines_) == 2  # no test line needed
    X = target["X"].reshape(len(target["X"]), -1)
    with pytest.raises(TypeError, match="takes a fitted FlexTuner; the DummyClassifier has "
                                        "no units_"):
        UnitScoresDisplay.from_estimator(DummyClassifier().fit(X, target["y"]))


def test_display_from_results_draws_per_ratio():
    display = UnitScoresDisplay.from_results(_results(), shift="blur")
    assert display.keys == UNITS + ["all"]
    assert display.labels == ["2/class (2 runs)", "10/class"]
    assert display.title == "conv4: blur"
    np.testing.assert_allclose(display.validation_scores, [[0.5, 0.7, 0.55, 0.4, 0.6],
                                                           [0.6, 0.7, 0.8, 0.5, 0.9]])
    np.testing.assert_allclose(display.test_scores, [[0.5, 0.7, 0.8, 0.4, 0.6],
                                                     [0.6, 0.7, 0.8, 0.5, 0.95]])
    assert display.selected == ["conv2", "all"]
    ax = display.ax_
    assert display.lines_ == list(ax.lines) and len(ax.lines) == 6
    val2, test2, pick2, val10, test10, pick10 = ax.lines
    assert display.validation_lines_ == [val2, val10]
    assert display.test_lines_ == [test2, test10]
    assert display.selected_markers_ == [pick2, pick10]
    assert list(pick2.get_xdata()) == [1] and list(pick10.get_xdata()) == [4]
    assert _legend_texts(ax) == ["2/class (2 runs)", "10/class"]
    assert ax.get_legend().get_title().get_text() == "solid: val, dashed: test"
    # exactly what plot_unit_scores draws
    theirs = plot_unit_scores(_results(), shift="blur")
    assert len(ax.lines) == len(theirs.lines)
    for ours, line in zip(ax.lines, theirs.lines):
        np.testing.assert_allclose(ours.get_xdata(), line.get_xdata())
        np.testing.assert_allclose(ours.get_ydata(), line.get_ydata())
        assert ours.get_linestyle() == line.get_linestyle()
        colour = matplotlib.colors.to_hex
        assert colour(ours.get_color()) == colour(line.get_color())
        assert ours.get_marker() == line.get_marker()
    assert theirs.get_title() == ax.get_title()

    display = UnitScoresDisplay.from_results(_results(), shift="blur", ratios=[10],
                                             include_all=False)
    assert display.labels == ["10/class"] and display.selected == ["all"]  # not drawn
    assert len(display.lines_) == 2 and display.selected_markers_ == [None]


def test_display_built_by_hand_plots():
    keys = UNITS + ["all"]
    one = UnitScoresDisplay(keys, [0.70, 0.84, 0.86, 0.80, 0.85],
                            test_scores=[0.68, 0.80, 0.85, 0.81, 0.83], selected="fc1",
                            title="by hand")
    assert one.plot() is one
    assert len(one.lines_) == 3 and one.ax_.get_title() == "by hand"
    assert _legend_texts(one.ax_) == ["validation", "test", "selected: fc1"]
    np.testing.assert_allclose(one.lines_[1].get_ydata(), [0.68, 0.80, 0.85, 0.81, 0.83])
    assert list(one.lines_[2].get_xdata()) == [2]

    two = UnitScoresDisplay([("conv1",), "conv2", ("fc1", "fc2")],
                            [[0.1, 0.2, 0.3], [0.4, np.nan, 0.6]],
                            test_scores=[[0.2, 0.3, 0.4], None],
                            selected=[("fc1", "fc2"), "conv2"], labels=["a", "b"])
    two.plot()
    assert two.keys == ["conv1", "conv2", "fc1+fc2"]
    assert two.selected == ["fc1+fc2", "conv2"]
    # a, its test line, its pick; b, no test line, no marker on its unknown score
    assert len(two.lines_) == 4 and two.test_lines_[1] is None
    assert two.selected_markers_[1] is None
    assert list(two.selected_markers_[0].get_xdata()) == [2]
    assert [t.get_text() for t in two.ax_.get_xticklabels()] == two.keys
    assert _legend_texts(two.ax_) == ["a", "b"] and two.ax_.get_title() == ""


def test_display_draws_on_a_given_ax():
    fig, (left, right) = plt.subplots(1, 2)
    display = UnitScoresDisplay(UNITS, [0.1, 0.2, 0.3, 0.4]).plot(ax=right)
    assert display.ax_ is right and display.figure_ is fig
    assert list(right.lines) == display.lines_ and not left.lines
    display = UnitScoresDisplay.from_results(_results(), shift="noise", ax=left)
    assert display.ax_ is left and len(left.lines) == 3


@pytest.mark.parametrize("kwargs, message", [
    (dict(validation_scores=[0.1, 0.2]), "2 scores per series for 4 keys"),
    (dict(validation_scores=[[[0.1] * 4]]), r"shape \(n_series, n_keys\)"),
    (dict(validation_scores=[[0.1] * 4] * 2), "labels=None draws one fit, but there are 2"),
    (dict(validation_scores=[[0.1] * 4] * 2, labels=["a"]), "labels has 1 entries for 2"),
    (dict(validation_scores=[[0.1] * 4] * 2, labels=["a", "b"], test_scores=[None]),
     "test_scores has 1 series"),
    (dict(validation_scores=[0.1] * 4, test_scores=[0.1] * 3), "one score per key"),
    (dict(validation_scores=[[0.1] * 4] * 2, labels=["a", "b"], selected=["fc1"]),
     "selected has 1 picks for 2 series"),
    (dict(validation_scores=[[0.1] * 4] * 3, labels=["a", "b", "c"], selected="fc1"),
     "selected='fc1': pass one pick per series"),
])
def test_display_checks_what_it_is_given(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UnitScoresDisplay(UNITS, **kwargs)


_RESULTS_TAKEN = (r"draws bench results: results rows \(dicts, e\.g\. "
                  r"flexsk\.bench\.read_results\(path\)\) or the path of a results CSV; ")
_USE_THE_TUNER = (r"\. For a fitted tuner, pass the tuner itself: "
                  r"UnitScoresDisplay\.from_estimator\(tuner\) or plot_unit_scores\(tuner\)\.")


@pytest.mark.parametrize("call, message", [
    (lambda t: plot_selection_heatmap(t),
     "plot_selection_heatmap " + _RESULTS_TAKEN + "got a FlexTuner" + _USE_THE_TUNER),
    (lambda t: plot_selection_heatmap([t]), "plot_selection_heatmap " + _RESULTS_TAKEN
     + r"got a list holding a FlexTuner \(at index 0\)" + _USE_THE_TUNER),
    (lambda t: unit_scores_figure(t),
     "unit_scores_figure " + _RESULTS_TAKEN + "got a FlexTuner" + _USE_THE_TUNER),
    (lambda t: unit_scores_figure((_results()[0], t)), "unit_scores_figure " + _RESULTS_TAKEN
     + r"got a tuple holding a FlexTuner \(at index 1\)" + _USE_THE_TUNER),
    (lambda t: plot_unit_scores([t]), "plot_unit_scores " + _RESULTS_TAKEN
     + r"got a list holding a FlexTuner \(at index 0\)" + _USE_THE_TUNER),
    (lambda t: UnitScoresDisplay.from_results(t), "UnitScoresDisplay.from_results "
     + _RESULTS_TAKEN + "got a FlexTuner" + _USE_THE_TUNER),
    (lambda t: UnitScoresDisplay.from_results([t]), "UnitScoresDisplay.from_results "
     + _RESULTS_TAKEN + r"got a list holding a FlexTuner \(at index 0\)" + _USE_THE_TUNER),
    (lambda t: plot_selection_heatmap(["conv4,blur"]), "plot_selection_heatmap "
     + _RESULTS_TAKEN + r"got a list holding a str \(at index 0\)\.$"),
    (lambda t: UnitScoresDisplay.from_estimator(_results()),
     r"UnitScoresDisplay\.from_estimator takes a fitted FlexTuner; got a list\. For bench "
     r"results \(results rows or the path of a results CSV\), use "
     r"UnitScoresDisplay\.from_results\(results\)\."),
    (lambda t: UnitScoresDisplay.from_estimator("results.csv"),
     r"from_estimator takes a fitted FlexTuner; got a str\."),
])
def test_results_entry_points_refuse_a_tuner(flex_tuner, call, message):
    with pytest.raises(TypeError, match=message):
        call(flex_tuner)
    assert not plt.get_fignums()  # refused before drawing anything


def test_display_without_matplotlib_says_how_to_install(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r'pip install "flexsk\[plot\]"'):
        UnitScoresDisplay.from_results(_results(), shift="noise")
    with pytest.raises(ImportError, match=r'pip install "flexsk\[plot\]"'):
        UnitScoresDisplay(UNITS, [0.1, 0.2, 0.3, 0.4]).plot()

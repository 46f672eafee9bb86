"""flexsk.plot: per-unit score lines and selection heat maps (matplotlib, Agg)."""

import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from flexsk import FlexTuner  # noqa: E402
from flexsk.plot import (plot_selection_heatmap, plot_unit_scores,  # noqa: E402
                         unit_scores_figure)

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

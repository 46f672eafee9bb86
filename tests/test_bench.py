"""flexsk bench: the results file (columns, resume, interruption, config) and the tables."""

import csv
import io
import re
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import flexsk
from flexsk import bench
from flexsk.bench import (COLUMNS, BenchConfigError, bold_cells, make_config, mean_accuracies,
                          picks_markdown, read_results, retrieval_markdown, run_bench,
                          selection_markdown, summary_line, table3_markdown,
                          versus_baselines_markdown, win_counts, win_counts_markdown)
from flexsk.cli import main
from flexsk.datasets import load_digits_source, make_digits_shift

from conftest import IMAGE_SIZE

TINY = dict(nets=["conv4"], shifts=["noise"], ratios=[2], repeats=2,
            strategies=["flex", "faster"], max_epochs=2, patience=1, image_size=IMAGE_SIZE)
TINY_ARGS = ["bench", "--nets", "conv4", "--shifts", "noise", "--ratios", "2", "--repeats",
             "2", "--strategies", "flex,faster", "--max-epochs", "2", "--patience", "1",
             "--image-size", str(IMAGE_SIZE), "--quiet"]


@pytest.fixture(autouse=True)
def _zoo_cache(cache_dir, monkeypatch):
    # The bench loads zoo nets from the default cache: use the session's.
    monkeypatch.setenv("FLEXSK_CACHE_DIR", str(cache_dir))


def _raw_rows(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, cache_dir):
    """The tiny grid run once through the CLI (4 runs, reports written)."""
    output = tmp_path_factory.mktemp("bench")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLEXSK_CACHE_DIR", str(cache_dir))
        assert main(TINY_ARGS + ["--output", str(output)]) == 0
    return output


def test_tiny_run_writes_documented_columns(tiny_run):
    header, raw = _raw_rows(tiny_run / "results.csv")
    assert header == COLUMNS
    assert [(r["repeat"], r["strategy"]) for r in raw] == [
        ("0", "flex"), ("0", "faster"), ("1", "flex"), ("1", "faster")]
    assert json.loads((tiny_run / "config.json").read_text()) == make_config(**TINY)

    rows = read_results(tiny_run)
    X_test, y_test = make_digits_shift("noise", split="test", image_size=IMAGE_SIZE,
                                       return_X_y=True)
    for row in rows:
        assert (row["net"], row["n_channels"], row["shift"], row["ratio"]) == (
            "conv4", 1, "noise", 2)
        assert row["n_train"] == 20
        assert (row["max_epochs"], row["patience"], row["image_size"]) == (2, 1, IMAGE_SIZE)
        assert row["lr"] == pytest.approx(1e-3)
        assert row["units"] == ["conv1", "conv2", "fc1", "fc2"]
        assert 0.0 <= row["test_accuracy"] <= 1.0 and row["fit_seconds"] > 0
        # keep_candidates=True: every candidate's test accuracy, the returned one included
        assert set(row["candidate_test_scores"]) == set(row["validation_scores"])
        assert row["test_accuracy"] == pytest.approx(
            row["candidate_test_scores"][row["selected_unit"]])
        assert set(row["n_epochs"]) == set(row["validation_scores"])
        assert all(1 <= n <= 2 for n in row["n_epochs"].values())
        assert 0.0 <= row["source_accuracy"] <= 1.0
    flex, faster = rows[0], rows[1]
    assert set(flex["candidate_test_scores"]) == {"conv1", "conv2", "fc1", "fc2", "all"}
    assert list(flex["proxy_scores"]) == ["conv1", "conv2", "fc1", "fc2"]
    assert len(faster["validation_scores"]) == 1
    # Retrieval only for ft-fc (1), ft-all and flex; an empty cell otherwise.
    assert 0.0 < flex["map_at_10"] <= 1.0 and 0.0 < flex["source_map_at_10"] <= 1.0
    assert faster["map_at_10"] is None and raw[1]["map_at_10"] == ""
    # The source accuracy is the pretrained net's on the target test set.
    net = flexsk.zoo.load_source_net("conv4", image_size=IMAGE_SIZE)
    assert flex["source_accuracy"] == pytest.approx(np.mean(net.predict(X_test) == y_test))


def test_tiny_run_writes_reports(tiny_run):
    names = {p.name for p in tiny_run.iterdir()}
    assert {"table3.md", "retrieval.md", "fig1_conv4.png", "fig2_conv4.png",
            "timing.json"} <= names
    table = (tiny_run / "table3.md").read_text()
    assert "noise" in table and "Out of 1 scenarios" in table
    assert "max_epochs=2, patience=1" in table  # the grid is stated
    timing = json.loads((tiny_run / "timing.json").read_text())
    assert timing[-1]["runs"] == 4 and timing[-1]["completed_grid"]


def test_resume_skips_finished_rows(tmp_path, monkeypatch):
    config = make_config(**TINY)
    assert run_bench(config, tmp_path, progress=False, log=None) == 4
    before = (tmp_path / "results.csv").read_bytes()

    def fail(self, *args, **kwargs):
        raise AssertionError("a finished run was fitted again")

    monkeypatch.setattr(flexsk.FlexTuner, "fit", fail)
    assert run_bench(config, tmp_path, progress=False, log=None) == 0
    assert (tmp_path / "results.csv").read_bytes() == before


def test_interrupted_run_loses_nothing(tmp_path, monkeypatch):
    config = make_config(**TINY)
    fit = flexsk.FlexTuner.fit
    calls = []

    on_disk = []

    def interrupted_fit(self, *args, **kwargs):
        calls.append(self.strategy)
        if len(calls) == 3:
            # What a kill -9 would leave: rows are flushed as soon as they finish.
            on_disk.extend(_raw_rows(tmp_path / "results.csv")[1])
            raise KeyboardInterrupt
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(flexsk.FlexTuner, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):
        run_bench(config, tmp_path, progress=False, log=None)
    _, partial = _raw_rows(tmp_path / "results.csv")
    assert [(r["repeat"], r["strategy"]) for r in partial] == [("0", "flex"), ("0", "faster")]
    assert on_disk == partial

    monkeypatch.setattr(flexsk.FlexTuner, "fit", fit)
    assert run_bench(config, tmp_path, progress=False, log=None) == 2
    _, rows = _raw_rows(tmp_path / "results.csv")
    assert rows[:2] == partial  # finished rows are kept as they were
    assert [(r["repeat"], r["strategy"]) for r in rows] == [
        ("0", "flex"), ("0", "faster"), ("1", "flex"), ("1", "faster")]
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert [(t["runs"], t["completed_grid"]) for t in timing] == [(2, False), (2, True)]


def test_partly_written_last_line_is_dropped_and_redone(tmp_path):
    config = make_config(**dict(TINY, repeats=1))
    run_bench(config, tmp_path, progress=False, log=None)
    path = tmp_path / "results.csv"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][:40])  # killed mid-write
    with pytest.warns(RuntimeWarning, match="no newline"):
        assert run_bench(config, tmp_path, progress=False, log=None) == 1
    rows = read_results(path)
    assert [r["strategy"] for r in rows] == ["flex", "faster"]


def test_other_config_is_refused(tmp_path, capsys):
    run_bench(make_config(**dict(TINY, repeats=1, strategies=["ft-fc-1"])), tmp_path,
              progress=False, log=None)
    with pytest.raises(BenchConfigError, match="max_epochs: 2 there, 3 now.*--output"):
        run_bench(make_config(**dict(TINY, repeats=1, strategies=["ft-fc-1"], max_epochs=3)),
                  tmp_path, progress=False, log=None)
    assert main(TINY_ARGS + ["--output", str(tmp_path)]) == 2
    assert "--output NEWDIR" in capsys.readouterr().err
    assert len(read_results(tmp_path)) == 1  # untouched


def test_csv_without_config_is_refused(tmp_path):
    (tmp_path / "results.csv").write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(BenchConfigError, match="configuration is unknown"):
        run_bench(make_config(**TINY), tmp_path, progress=False, log=None)


def test_report_only_needs_results(tmp_path, capsys):
    assert main(["bench", "--report-only", "--output", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_make_config_grid():
    full = make_config()
    assert full["nets"] == ["conv4", "conv7"] and len(full["shifts"]) == 10
    assert full["ratios"] == [2, 10, 40]
    assert full["repeats"] == {"2": 5, "10": 1, "40": 1}
    assert len(full["strategies"]) == 11 and full["strategies"][-1] == "scratch"
    assert len(bench.plan_runs(full)) == 20 * 7 * 11
    quick = make_config(quick=True)
    assert quick["nets"] == ["conv4"] and quick["ratios"] == [2, 10]
    assert len(bench.plan_runs(quick)) == 72  # the paper's strategies: no recipes
    assert make_config(repeats={2: 3}, other_repeats=2)["repeats"] == {"2": 3, "10": 2,
                                                                       "40": 2}
    runs = bench.plan_runs(make_config(shifts=["mnistm", "blur"], nets=["conv4"]))
    assert {(r["shift"], r["n_channels"]) for r in runs} == {("mnistm", 3), ("blur", 1)}
    with pytest.raises(ValueError, match="unknown shift"):
        make_config(shifts=["sepia"])
    with pytest.raises(ValueError, match="between 1 and 40"):
        make_config(ratios=[50])


# -- tables on hand-built results ----------------------------------------------------------

def _row(net, shift, ratio, repeat, strategy, acc, map_at_10=None, n_channels=1):
    return dict(net=net, n_channels=n_channels, shift=shift, ratio=ratio, repeat=repeat,
                strategy=strategy, test_accuracy=acc, source_accuracy=0.5,
                map_at_10=map_at_10, source_map_at_10=0.3 if map_at_10 is not None else None)


def _hand_results():
    rows = []
    # Scenario A: flex ties ft-all (0.85 as a float mean of 0.80 and 0.90): no bold.
    a = dict(flex=(0.80, 0.90), fast=(0.84, 0.84), faster=(0.70, 0.70),
             **{"ft-fc-1": (0.82, 0.82), "ft-fc-2": (0.845, 0.845), "ft-ss": (0.83, 0.83),
                "ft-all": (0.85, 0.85)})
    for strategy, accs in a.items():
        for repeat, acc in enumerate(accs):
            rows.append(_row("conv4", "blur", 2, repeat, strategy, acc))
    # Scenario B: fast beats every baseline by 0.0004 (bold); flex ties ft-ss.
    b = {"flex": 0.90, "fast": 0.9004, "faster": 0.80, "ft-fc-1": 0.70, "ft-fc-2": 0.899,
         "ft-ss": 0.90, "ft-all": 0.88}
    for strategy, acc in b.items():
        rows.append(_row("conv7", "noise", 10, 0, strategy, acc))
    return rows


def test_bold_cells():
    assert bold_cells({"flex": 0.9, "fast": 0.8, "ft-all": 0.85}) == {"flex"}
    assert bold_cells({"flex": 0.85, "ft-all": 0.85, "ft-ss": 0.6}) == set()
    assert bold_cells({"flex": 0.9, "fast": 0.95}) == set()  # no baseline


def test_table3_bold_cells_and_source_accuracy():
    rows = _hand_results()
    means = mean_accuracies(rows)
    assert list(means) == [("conv4", 1, "blur", 2), ("conv7", 1, "noise", 10)]
    assert means[("conv4", 1, "blur", 2)]["flex"] == pytest.approx(0.85)
    table = table3_markdown(rows)
    lines = {line.split("|")[2].strip(): line for line in table.splitlines()
             if line.startswith("| 2") or line.startswith("| 10")}
    assert "**" not in lines["blur (0.50)"]
    cells = [c.strip() for c in lines["noise (0.50)"].split("|")[3:-1]]
    assert cells == ["0.900", "**0.900**", "0.800", "0.700", "0.899", "0.900", "0.880"]
    assert lines["blur (0.50)"].split("|")[1].strip() == "2 (2x)"
    assert "**conv4**" in table and "**conv7**" in table


def test_win_counts_and_summary_line():
    n, counts = win_counts(_hand_results())
    assert n == 2
    assert counts == {"flex": 2, "fast": 1, "faster": 0, "ft-fc-1": 0, "ft-fc-2": 0,
                      "ft-ss": 1, "ft-all": 1}
    line = summary_line(_hand_results())
    assert "Out of 2 scenarios" in line and "flex 2/2" in line and "ft-fc (2) 0/2" in line
    assert "flex 60/72, fast-flex 41/72, ft-all 26/72" in line


def test_scratch_is_a_reference_never_a_winner():
    rows = _hand_results()
    # scratch beats everything in scenario A (conv4 blur 2), loses in B
    rows += [_row("conv4", "blur", 2, 0, "scratch", 0.95),
             _row("conv7", "noise", 10, 0, "scratch", 0.5)]
    n, counts = win_counts(rows)
    assert "scratch" not in counts and counts["flex"] == 2  # as without scratch
    text = bench.scratch_markdown(rows)
    assert text.startswith("Training from scratch beats every fine-tuning strategy in 1 of 2 "
                           "scenarios.")
    # flex and ft-all tie at 0.850: the first is named
    assert _cells(text, "conv4") == ["conv4", "blur", "2", "0.950", "flex 0.850", "0.850"]
    assert "scratch" in table3_markdown(rows).splitlines()[2]  # a column of Table 3
    assert bench.scratch_markdown(_hand_results()) == "No scratch runs.\n"


def test_scratch_trains_reinitialized_weights_and_leaves_the_zoo_net_alone():
    from flexsk.bench._runner import _reinitialized
    from flexsk.zoo import load_source_net

    net = load_source_net("conv4", image_size=IMAGE_SIZE)
    before = {k: v.clone() for k, v in net.module_.state_dict().items()}
    fresh = _reinitialized(net, 0)
    again = _reinitialized(net, 0)
    for key, value in net.module_.state_dict().items():
        assert torch.equal(value, before[key])
        assert not torch.equal(fresh.module_.state_dict()[key], value)
        assert torch.equal(fresh.module_.state_dict()[key], again.module_.state_dict()[key])


def _cells(table, first):
    line = next(line for line in table.splitlines() if line.startswith(f"| {first}"))
    return [c.strip() for c in line.split("|")[1:-1]]


def test_win_counts_per_ratio():
    table = win_counts_markdown(_hand_results())
    assert _cells(table, "2 per class") == ["2 per class", "1/1", "0/1", "0/1", "0/1", "0/1",
                                            "0/1", "1/1"]
    assert _cells(table, "10 per class") == ["10 per class", "1/1", "1/1", "0/1", "0/1",
                                             "0/1", "1/1", "0/1"]
    assert _cells(table, "all ratios")[1:] == ["2/2", "1/2", "0/2", "0/2", "0/2", "1/2",
                                               "1/2"]


def test_picks_per_net_and_ratio():
    rows = [dict(_row("conv4", "blur", 2, i, "flex", 0.5), selected_unit=unit,
                 units=["conv1", "fc2"]) for i, unit in enumerate(["all", "fc2", "all"])]
    rows.append(dict(rows[0], strategy="fast", selected_unit="conv1"))
    assert _cells(picks_markdown(rows), "conv4") == ["conv4", "2", "3", "fc2 1, all 2"]


def test_versus_baselines():
    table = versus_baselines_markdown(_hand_results())
    # A: flex 0.85 vs 0.85 (tied), fast -0.01, faster -0.15;
    # B: flex 0.90 vs 0.90 (tied), fast +0.0004 (tied), faster -0.10.
    assert _cells(table, "flex") == ["flex", "0", "2", "0", "2/2", "+0.000"]
    assert _cells(table, "fast") == ["fast", "0", "1", "1", "2/2", "-0.005"]
    assert _cells(table, "faster") == ["faster", "0", "0", "2", "0/2", "-0.125"]
    strict = versus_baselines_markdown(_hand_results(), within=0.005)
    assert _cells(strict, "fast")[4] == "1/2"


def test_selection_against_the_oracle():
    def row(strategy, repeat, acc, selected, candidates=None):
        return dict(_row("conv4", "blur", 2, repeat, strategy, acc),
                    selected_unit=selected, candidate_test_scores=candidates or {})

    candidates = {"conv1": 0.6, "fc2": 0.5, "all": 0.8}
    rows = [row("flex", 0, 0.8, "all", candidates), row("fast", 0, 0.7, "fc2"),
            row("faster", 0, 0.75, "conv1"),
            row("flex", 1, 0.6, "conv1", candidates), row("fast", 1, 0.8, "all"),
            row("faster", 1, 0.5, "fc2"),
            row("fast", 2, 0.1, "fc2")]  # no flex run to compare with: left out
    table = selection_markdown(rows)
    expected = ["2", "50%", "50%", "0.800", "0.100", "0.050", "0.175"]
    assert _cells(table, "2 per class")[1:] == expected
    assert _cells(table, "all ratios")[1:] == expected


def test_retrieval_table():
    rows = [_row("conv4", "blur", 2, 0, "flex", 0.9, map_at_10=0.6),
            _row("conv4", "blur", 2, 1, "flex", 0.9, map_at_10=0.4),
            _row("conv4", "blur", 2, 0, "ft-all", 0.9, map_at_10=0.7),
            _row("conv4", "blur", 2, 0, "ft-fc-1", 0.9, map_at_10=0.3),
            _row("conv4", "blur", 2, 0, "fast", 0.9)]
    table = retrieval_markdown(rows)
    row = next(line for line in table.splitlines() if line.startswith("| 2"))
    assert [c.strip() for c in row.split("|")[1:-1]] == [
        "2", "blur", "0.300", "0.300", "**0.700**", "0.500"]
    assert "fast" not in table
    mean_row = next(line for line in table.splitlines() if "mean over 1" in line)
    assert [c.strip() for c in mean_row.split("|")[2:-1]] == ["0.300", "0.300", "0.700",
                                                              "0.500"]


def test_reports_without_matplotlib(tmp_path, monkeypatch, capsys):
    import sys

    from flexsk.plot import write_figures

    run_bench(make_config(**dict(TINY, repeats=1)), tmp_path, progress=False, log=None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    written = bench.write_reports(tmp_path, log=None)
    assert {p.name for p in written} == {"table3.md", "retrieval.md", "selection.md"}
    with pytest.raises(ImportError, match=re.escape('pip install "flexsk[plot]"')):
        write_figures(tmp_path, log=None)
    # The command line writes the tables and says how to get the figures.
    for p in written:
        p.unlink()
    assert main(["bench", "--report-only", "--output", str(tmp_path)]) == 0
    assert 'Figures skipped: flexsk.plot needs matplotlib: pip install "flexsk[plot]"' in \
        capsys.readouterr().out
    assert {p.name for p in tmp_path.glob("*.md")} == {"table3.md", "retrieval.md",
                                                       "selection.md"}
    assert not list(tmp_path.glob("*.png"))


def test_write_figures(tiny_run, tmp_path):
    from flexsk.plot import write_figures

    (tmp_path / "results.csv").write_bytes((tiny_run / "results.csv").read_bytes())
    written = write_figures(tmp_path, log=None)
    assert sorted(p.name for p in written) == ["fig1_conv4.png", "fig2_conv4.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written)
    (tmp_path / "results.csv").write_text((tiny_run / "results.csv").read_text()
                                          .splitlines()[0] + "\n")
    with pytest.raises(bench.BenchError, match="no finished runs"):
        write_figures(tmp_path, log=None)


def test_map_at_10_is_tuned_target_against_pretrained_source(tiny_run):
    from flexsk.metrics import map_at_k
    from flexsk.zoo import load_source_net

    row = read_results(tiny_run)[2]  # flex, repeat 1
    bunch = make_digits_shift("noise", image_size=IMAGE_SIZE)
    X, y, split = bunch.data, bunch.target, bunch.split
    pool = np.flatnonzero(split == "train")
    train = pool[flexsk.datasets.subsample_per_class(y[pool], 2, random_state=1)]
    val, test = split == "val", split == "test"
    tuner = flexsk.FlexTuner(load_source_net("conv4", image_size=IMAGE_SIZE), strategy="flex",
                             max_epochs=2, patience=1, random_state=1)
    tuner.fit(X[train], y[train], X_val=X[val], y_val=y[val])
    assert row["selected_unit"] == tuner.selected_unit_
    X_source, y_source = load_digits_source(split="test", image_size=IMAGE_SIZE,
                                            return_X_y=True)
    gallery = tuner.pretrained_transform(X_source)
    assert row["map_at_10"] == pytest.approx(
        map_at_k(tuner.transform(X[test]), y[test], gallery, y_source, k=10))
    assert row["source_map_at_10"] == pytest.approx(
        map_at_k(tuner.pretrained_transform(X[test]), y[test], gallery, y_source, k=10))


@pytest.mark.parametrize("argv, message", [
    (["--repeats", "2:x"], "--repeats takes N or RATIO:N"),
    (["--repeats", "x"], "--repeats takes N or RATIO:N"),
    (["--repeats", "2:5:3"], "--repeats takes N or RATIO:N"),
    (["--ratios", "2", "--repeats", "10:3"], r"ratios \[10\] that are not in the grid"),
])
def test_bad_repeats_are_refused(tmp_path, capsys, argv, message):
    assert main(["bench", "--output", str(tmp_path / "out"), *argv]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


# -- estimator defaults ---------------------------------------------------------------------

def test_default_grid_leaves_the_estimator_defaults(tmp_path, monkeypatch):
    config = make_config(**{k: v for k, v in TINY.items() if k not in ("max_epochs",
                                                                       "patience")})
    assert (config["max_epochs"], config["patience"]) == (None, None)
    assert "max_epochs and patience: estimator defaults" in bench.describe_config(config)
    given = []
    fit = flexsk.FlexTuner.fit
    default_max_epochs, default_patience = (flexsk.FlexTuner(None).max_epochs,
                                            flexsk.FlexTuner(None).patience)

    def spy(self, *args, **kwargs):
        given.append((self.max_epochs, self.patience))
        return fit(self.set_params(max_epochs=2), *args, **kwargs)  # fast, whatever the default

    monkeypatch.setattr(flexsk.FlexTuner, "fit", spy)
    assert run_bench(dict(config, repeats={"2": 1}), tmp_path, progress=False, log=None) == 2
    assert given == [(default_max_epochs, default_patience)] * 2
    assert json.loads((tmp_path / "config.json").read_text())["max_epochs"] is None
    # The rows record what the tuner used: its own default patience here.
    assert {row["patience"] for row in read_results(tmp_path)} == {default_patience}
    bench.write_reports(tmp_path, log=None)
    assert "max_epochs and patience: estimator defaults" in (tmp_path / "table3.md").read_text()


def test_results_made_with_explicit_settings_stay_readable(tmp_path):
    # the full grid's config.json as the bench wrote it before its defaults changed
    stored = json.loads((Path(__file__).parent / "data" / "bench_config_v1.json").read_text())
    assert (stored["max_epochs"], stored["patience"]) == (100, 10)
    assert "max_epochs=100, patience=10, image_size=16" in bench.describe_config(stored)
    # Resuming them needs their settings: the new defaults are another grid.
    (tmp_path / "config.json").write_text(json.dumps(stored))
    with pytest.raises(BenchConfigError, match="max_epochs: 100 there, None now"):
        run_bench(make_config(), tmp_path, progress=False, log=None)
    # the same grid and settings, under the current protocol version
    assert make_config(max_epochs=100, patience=10,
                       strategies=stored["strategies"]) == {
        **stored, "bench_version": bench.BENCH_VERSION}


# -- one writer per directory ---------------------------------------------------------------

def _hold_lock(output):
    """What a running flexsk bench holds: the directory's lock file, locked."""
    import fcntl

    output.mkdir(parents=True, exist_ok=True)
    f = open(output / bench.LOCK_FILE, "a+")
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    f.write("12345\n")
    f.flush()
    return f


def test_a_second_bench_on_a_directory_is_refused(tmp_path, capsys):
    pytest.importorskip("fcntl")
    lock = _hold_lock(tmp_path)
    try:
        assert main(TINY_ARGS + ["--output", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "another flexsk bench (process 12345)" in err
        assert not (tmp_path / "results.csv").exists()
        assert not (tmp_path / "config.json").exists()
    finally:
        lock.close()
    config = make_config(**dict(TINY, repeats=1))
    assert run_bench(config, tmp_path, progress=False, log=None) == 2  # released: runs


def test_a_second_bench_process_exits_2_without_a_traceback(tmp_path, cache_dir):
    import subprocess
    import sys

    pytest.importorskip("fcntl")
    lock = _hold_lock(tmp_path)
    try:
        done = subprocess.run([sys.executable, "-m", "flexsk", *TINY_ARGS, "--output",
                               str(tmp_path)], capture_output=True, text=True, timeout=300,
                              env=dict(__import__("os").environ,
                                       FLEXSK_CACHE_DIR=str(cache_dir)))
    finally:
        lock.close()
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("flexsk bench: error: another flexsk bench")


def test_temporary_files_have_unique_names(tmp_path, monkeypatch):
    import os

    # What another writer's temporary files were under the old fixed names.
    for name in ("config.json.tmp", "timing.json.tmp"):
        (tmp_path / name).mkdir()
    replaced = []
    replace = os.replace

    def spy(src, dst):
        replaced.append(str(src))
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    run_bench(make_config(**dict(TINY, repeats=1)), tmp_path, progress=False, log=None)
    run_bench(make_config(**dict(TINY, repeats=1)), tmp_path, progress=False, log=None)
    assert len(replaced) == len(set(replaced)) >= 3  # config once, timing twice
    assert all(f".{os.getpid()}." in name for name in replaced)
    assert sorted(p.name for p in tmp_path.glob("*.tmp")) == ["config.json.tmp",
                                                              "timing.json.tmp"]


# -- only complete rows count ---------------------------------------------------------------

def _finished_tiny(tmp_path):
    config = make_config(**TINY)
    run_bench(config, tmp_path, progress=False, log=None)
    return config, tmp_path / "results.csv"


def test_a_row_cut_after_its_key_columns_is_redone(tmp_path):
    config, path = _finished_tiny(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    key = b",".join(lines[2].split(b",")[:6])
    assert key == b"conv4,1,noise,2,0,faster"
    path.write_bytes(b"".join(lines[:2]) + key + b"\r\n" + b"".join(lines[3:]))
    with pytest.warns(RuntimeWarning, match=rf"line 3 .*6 of the {len(COLUMNS)} columns.*"
                      r"conv4 \(1ch\) noise, ratio 2, repeat 0, faster is done again"):
        assert run_bench(config, tmp_path, progress=False, log=None) == 1
    new = path.read_bytes().splitlines(keepends=True)
    assert new[:2] + new[2:4] == lines[:2] + lines[3:]  # kept byte for byte, in order
    assert key + b"\r\n" not in new  # the damaged line is gone
    assert [(r["repeat"], r["strategy"]) for r in read_results(path)] == [
        (0, "flex"), (1, "flex"), (1, "faster"), (0, "faster")]


@pytest.mark.parametrize("damage, reason", [
    (lambda line, header: header, "a repeated header line"),
    (lambda line, header: line.replace(b'""conv1""', b'""conv1', 1), "units .* not JSON"),
    (lambda line, header: line.replace(b",noise,2,", b",noise,two,", 1), "ratio 'two'"),
    (lambda line, header: line.replace(b"\r\n", b",extra\r\n"),
     f"{len(COLUMNS) + 1} of the {len(COLUMNS)} columns"),
])
def test_damaged_lines_are_dropped_and_their_runs_redone(tmp_path, damage, reason):
    config, path = _finished_tiny(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2] + [damage(lines[2], lines[0])] + lines[3:]))
    with pytest.warns(RuntimeWarning, match=f"line 3 was not a complete row \\({reason}"):
        assert run_bench(config, tmp_path, progress=False, log=None) == 1
    assert len(read_results(path)) == 4
    assert path.read_bytes().splitlines(keepends=True)[:4] == lines[:2] + lines[3:]


def test_read_results_skips_lines_that_are_not_rows(tmp_path):
    _, path = _finished_tiny(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:3] + [lines[0]] + lines[3:4] + [lines[4][:60]]))
    with pytest.warns(RuntimeWarning) as record:
        rows = read_results(path)
    assert [(r["repeat"], r["strategy"]) for r in rows] == [
        (0, "flex"), (0, "faster"), (1, "flex")]
    messages = [str(w.message) for w in record]
    assert "line 4" in messages[0] and "repeated header" in messages[0]
    assert "line 6" in messages[1] and "no newline" in messages[1]


def test_a_duplicated_row_is_dropped_with_a_warning(tmp_path):
    config, path = _finished_tiny(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines + [lines[2]]))  # an exact copy of a complete row
    with pytest.warns(RuntimeWarning, match=r"line 6 \(conv4 \(1ch\) noise, ratio 2, "
                                            r"repeat 0, faster\) repeats a run"):
        rows = read_results(path)
    assert len(rows) == 4 and len({bench.run_key(r) for r in rows}) == 4
    with pytest.warns(RuntimeWarning, match="repeats a run"):
        assert run_bench(config, tmp_path, progress=False, log=None) == 0
    assert path.read_bytes().splitlines(keepends=True) == lines  # dropped from the file


def test_a_row_with_empty_metric_cells_is_incomplete(tmp_path, capsys):
    config, path = _finished_tiny(tmp_path)
    lines = path.read_bytes().decode().splitlines(keepends=True)
    cells = next(csv.reader([lines[2]]))
    for column in ("test_accuracy", "fit_seconds"):
        cells[COLUMNS.index(column)] = ""
    lines[2] = ",".join(f'"{c}"' if "," in c or '"' in c else c for c in
                        (c.replace('"', '""') for c in cells)) + "\r\n"
    path.write_text("".join(lines))
    with pytest.warns(RuntimeWarning, match="line 3 .*test_accuracy is empty"):
        assert len(read_results(path)) == 3  # --report-only reads it so too
    with pytest.warns(RuntimeWarning, match="line 3 was not a complete row \\(test_accuracy "
                                            "is empty"):
        assert run_bench(config, tmp_path, progress=False, log=None) == 1  # done again


def _with_cells(line, **cells):
    """A line of the CSV (bytes) with some of its cells replaced, quoted as the runner does."""
    values = next(csv.reader([line.decode()]))
    for column, value in cells.items():
        values[COLUMNS.index(column)] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue().encode()


@pytest.mark.parametrize("column", ["map_at_10", "source_map_at_10"])
def test_a_retrieval_row_with_an_empty_map_is_incomplete(tmp_path, column):
    config, path = _finished_tiny(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    assert b",,," in lines[2]  # faster has no mAP: its empty cells stay valid
    path.write_bytes(b"".join(lines[:3] + [_with_cells(lines[3], **{column: ""})]
                              + lines[4:]))
    run = r"conv4 \(1ch\) noise, ratio 2, repeat 1, flex"
    with pytest.warns(RuntimeWarning, match=rf"line 4 \({run}\) .*{column} is empty") as record:
        rows = read_results(path)  # --report-only reads it so too
    assert len(record) == 1
    assert [(r["repeat"], r["strategy"]) for r in rows] == [
        (0, "flex"), (0, "faster"), (1, "faster")]
    with pytest.warns(RuntimeWarning, match=rf"line 4 was not a complete row \({column} is "
                                            rf"empty.*{run} is done again"):
        assert run_bench(config, tmp_path, progress=False, log=None) == 1
    new = path.read_bytes().splitlines(keepends=True)
    assert new[:3] + new[3:4] == lines[:3] + lines[4:]  # kept byte for byte
    assert all(r["map_at_10"] is not None for r in read_results(path) if r["strategy"] == "flex")


def test_a_row_with_an_empty_refit_accuracy_is_incomplete(tmp_path):
    config, path = _finished_tiny(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2] + [_with_cells(lines[2], refit_test_accuracy="")]
                              + lines[3:]))
    run = r"conv4 \(1ch\) noise, ratio 2, repeat 0, faster"
    with pytest.warns(RuntimeWarning, match=rf"line 3 \({run}\) .*refit_test_accuracy is empty"):
        written = bench.write_reports(tmp_path, log=None)  # the others' selection report
    assert [p.name for p in written] == ["table3.md", "retrieval.md", "selection.md"]
    with pytest.warns(RuntimeWarning, match=r"line 3 was not a complete row "
                                            r"\(refit_test_accuracy is empty"):
        assert run_bench(config, tmp_path, progress=False, log=None) == 1  # done again
    assert len(read_results(path)) == 4


def test_results_made_before_the_refit_remove_a_stale_selection_report(tmp_path, capsys):
    _, path = _finished_tiny(tmp_path)
    bench.write_reports(tmp_path, log=None)
    assert (tmp_path / "selection.md").exists()
    # the columns of results made before the refit existed
    old = COLUMNS[:COLUMNS.index("refit_test_accuracy")]
    raw = path.read_bytes().decode().splitlines()
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(
        row[:len(old)] for row in csv.reader(raw))
    path.write_bytes(out.getvalue().encode())
    assert main(["bench", "--report-only", "--output", str(tmp_path)]) == 0
    assert not (tmp_path / "selection.md").exists()  # no stale report left
    said = [line for line in capsys.readouterr().out.splitlines() if "selection.md" in line]
    assert len(said) == 1
    assert "not written" in said[0] and "4 of the 4 rows" in said[0]
    assert "refit_test_accuracy" in said[0] and "removed" in said[0]
    assert {p.name for p in tmp_path.glob("*.md")} == {"table3.md", "retrieval.md"}
    said = []  # nothing stale the second time: nothing removed
    written = bench.write_reports(tmp_path, log=said.append)
    assert [p.name for p in written] == ["table3.md", "retrieval.md"]
    assert said[0].startswith("selection.md not written") and "removed" not in said[0]


@pytest.mark.parametrize("damage", ["appended", "inside a row"])
def test_undecodable_lines_are_dropped_and_their_runs_redone(tmp_path, damage):
    config, path = _finished_tiny(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    if damage == "appended":  # no run to name, none to redo
        bad, kept, number, run = b"\xff\xfe\x80 junk\n", lines, 6, ""
        path.write_bytes(b"".join(lines) + bad)
    else:  # after its key cells: its run is named, and done again
        bad = lines[2].replace(b",faster,", b",faster,\xff", 1)
        kept, number = lines[:2] + lines[3:], 3
        run = r" \(conv4 \(1ch\) noise, ratio 2, repeat 0, faster\)"
        path.write_bytes(b"".join(lines[:2] + [bad] + lines[3:]))
    with pytest.warns(RuntimeWarning, match=rf"line {number}{run} is not a complete row "
                                            r"\(not UTF-8 text"):
        assert main(["bench", "--report-only", "--output", str(tmp_path)]) == 0
    with pytest.warns(RuntimeWarning, match=rf"line {number} was not a complete row "
                                            r"\(not UTF-8 text"):
        assert main(TINY_ARGS + ["--output", str(tmp_path)]) == 0  # resumed, not refused
    new = path.read_bytes().splitlines(keepends=True)
    assert new[:len(kept)] == kept and bad not in new  # kept byte for byte
    assert len(read_results(path)) == 4


def test_an_undecodable_header_is_refused_in_one_line(tmp_path, capsys):
    config, path = _finished_tiny(tmp_path)
    path.write_bytes(path.read_bytes()[:200] + b"\xff\xfe\x80" + path.read_bytes()[200:])
    assert main(["bench", "--report-only", "--output", str(tmp_path)]) == 2
    _one_error_line(capsys, "results.csv", "not UTF-8", "line 1")
    assert main(TINY_ARGS + ["--output", str(tmp_path)]) == 2
    _one_error_line(capsys, "results.csv", "not UTF-8", "line 1")


def test_key_name_and_best_key():
    assert bench.key_name(("fc1", "fc2")) == "fc1+fc2" and bench.key_name("all") == "all"
    assert bench.best_key({"conv1": 0.2, "fc1": 0.5, "fc2": 0.5}) == "fc1"  # earliest of ties
    assert bench.best_key({}) is None


# -- damaged files: one line, exit code 2 ---------------------------------------------------

def _one_error_line(capsys, *words):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("flexsk bench: error: "), err
    for word in words:
        assert word in err
    return err


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"nets": ["conv4"]}'])
def test_damaged_config_json_is_refused(tmp_path, capsys, content):
    (tmp_path / "config.json").write_text(content)
    assert main(TINY_ARGS + ["--output", str(tmp_path)]) == 2
    _one_error_line(capsys, "config.json")
    assert not (tmp_path / "results.csv").exists()


def test_damaged_timing_json_is_refused_before_any_run(tiny_run, tmp_path, capsys):
    import shutil

    output = tmp_path / "out"
    shutil.copytree(tiny_run, output)
    (output / "timing.json").write_text("{garbage")
    before = {p.name: p.read_bytes() for p in output.iterdir() if p.name != ".flexsk-bench.lock"}
    more = [a if a != "2" or TINY_ARGS[i - 1] != "--repeats" else "3"
            for i, a in enumerate(TINY_ARGS)]
    assert main(TINY_ARGS + ["--output", str(output)]) == 2
    _one_error_line(capsys, "timing.json", "delete it")
    assert main(more + ["--output", str(output)]) == 2  # refused, not just finished
    capsys.readouterr()
    after = {p.name: p.read_bytes() for p in output.iterdir() if p.name != ".flexsk-bench.lock"}
    assert after == before  # no run lost, no report lost
    assert main(["bench", "--report-only", "--output", str(output)]) == 0


def test_damaged_config_json_is_refused_by_report_only(tiny_run, tmp_path, capsys):
    import shutil

    output = tmp_path / "out"
    shutil.copytree(tiny_run, output)
    (output / "config.json").write_text("")
    assert main(["bench", "--report-only", "--output", str(output)]) == 2
    _one_error_line(capsys, "config.json")


def test_unwritable_output_is_refused(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(TINY_ARGS + ["--output", str(blocker / "out")]) == 2
    _one_error_line(capsys, str(blocker))
    assert main(TINY_ARGS + ["--output", str(blocker)]) == 2
    _one_error_line(capsys, str(blocker))


def test_read_only_output_is_refused(tmp_path, capsys):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    os.chmod(tmp_path, 0o555)
    try:
        assert main(TINY_ARGS + ["--output", str(tmp_path)]) == 2
        _one_error_line(capsys, "Permission denied")
    finally:
        os.chmod(tmp_path, 0o755)


def test_reports_into_an_unwritable_directory_are_refused(tiny_run, tmp_path, capsys,
                                                          monkeypatch):
    import os
    import shutil

    output = tmp_path / "out"
    shutil.copytree(tiny_run, output)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(output / "table3.md"))

    monkeypatch.setattr(os, "replace", refuse)
    assert main(["bench", "--report-only", "--output", str(output)]) == 2
    _one_error_line(capsys, "Permission denied", "table3.md")
    assert not list(output.glob("*.tmp"))


# -- selection reports -----------------------------------------------------------------------


def _flex_row(repeat, validation, losses, tests, selected, strategy="flex", refit=None):
    return dict(net="conv4", n_channels=1, shift="blur", ratio=2, repeat=repeat,
                strategy=strategy, units=["conv1", "conv2"], selected_unit=selected,
                validation_scores=validation, validation_losses=losses,
                candidate_test_scores=tests, test_accuracy=tests.get(selected, 0.5),
                refit_test_accuracy=refit)


def test_regret_replays_both_rules_from_stored_scores():
    from flexsk.bench import regret_markdown

    # conv1 and conv2 tie on accuracy; conv2 has the lower loss and the better test score
    row = _flex_row(0, {"conv1": 0.9, "conv2": 0.9, "all": 0.8},
                    {"conv1": 0.5, "conv2": 0.3, "all": 0.2},
                    {"conv1": 0.80, "conv2": 0.85, "all": 0.84}, "conv2")
    table = regret_markdown([row])
    lines = [line for line in table.splitlines() if line.startswith("| conv4")]
    assert lines[0].split("|")[5].strip() == "0.00"  # accuracy, then loss: conv2
    assert lines[0].split("|")[6].strip() == "5.00"  # accuracy, then earliest: conv1
    # a diverged candidate (NaN loss) is never the new rule's pick
    diverged = _flex_row(0, {"conv1": 0.95, "conv2": 0.9, "all": 0.8},
                         {"conv1": float("nan"), "conv2": 0.3, "all": 0.2},
                         {"conv1": 0.1, "conv2": 0.85, "all": 0.84}, "conv2")
    assert "| 0.00" in regret_markdown([diverged])


def test_agreement_counts_pairs_of_repeats():
    from flexsk.bench import agreement_markdown

    rows = [_flex_row(r, {}, {}, {}, unit) for r, unit in enumerate(["conv1", "conv1", "all"])]
    table = agreement_markdown(rows)
    assert "| 2 per class | 3 " in table and "33%" in table  # 1 pair of 3 agrees


def test_refit_gain_per_ratio():
    from flexsk.bench import refit_markdown

    rows = [_flex_row(0, {}, {}, {"conv1": 0.70}, "conv1", refit=0.75),
            _flex_row(1, {}, {}, {"conv1": 0.80}, "conv1", refit=0.81)]
    assert "0.750 → 0.780 (+3.0)" in refit_markdown(rows)


# -- selection by another metric ---------------------------------------------------------------

@pytest.mark.parametrize("scoring", ["balanced_accuracy", "map@10"])
def test_bench_selects_by_a_scoring(tmp_path, capsys, scoring):
    args = TINY_ARGS[:TINY_ARGS.index("--strategies")] + [
        "--strategies", "ft-fc-1", "--max-epochs", "2", "--patience", "1", "--image-size",
        str(IMAGE_SIZE), "--quiet", "--scoring", scoring, "--output", str(tmp_path)]
    assert main(args) == 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["scoring"] == scoring
    assert f"selection by scoring={scoring!r}" in bench.describe_config(config)
    rows = read_results(tmp_path / "results.csv")
    assert len(rows) == 2
    for row in rows:
        if scoring == "balanced_accuracy":  # on the balanced test set, the accuracy
            assert row["test_score"] == pytest.approx(row["test_accuracy"])
        else:  # ft-fc (1) tunes the last unit, after the embedding: the source's mAP
            assert row["test_score"] == pytest.approx(row["source_map_at_10"])
    # the same directory without the option is another configuration
    assert main(args[:args.index("--scoring")] + ["--output", str(tmp_path)]) == 2
    assert f"scoring: {scoring!r} there, None now" in capsys.readouterr().err


def test_bench_without_scoring_leaves_the_column_empty(tiny_run):
    assert all(row["test_score"] is None for row in read_results(tiny_run / "results.csv"))


def test_bench_refuses_an_unknown_scoring(tmp_path, capsys):
    assert main(TINY_ARGS + ["--scoring", "accuracy_typo", "--output", str(tmp_path)]) == 2
    assert "scoring" in capsys.readouterr().err


# -- the measuring scripts' resumable CSV ----------------------------------------------------


def test_resumable_csv_resumes_and_redoes_damaged_rows(tmp_path):
    path = tmp_path / "runs.csv"
    columns, key = ["net", "seed", "score"], ["net", "seed"]
    with bench.resumable_csv(path, columns, key) as (done, write):
        assert done == set()
        write({"net": "conv4", "seed": 0, "score": 0.5})
        write({"net": "conv4", "seed": 1})  # empty cells are values
        write({"net": "", "seed": 1, "score": None})
        with pytest.raises(ValueError, match=r"unknown columns \['acc'\]"):
            write({"net": "conv4", "seed": 2, "acc": 1})
    with open(path, "ab") as f:  # a row with a cell too many, a non-UTF-8 one, one cut short
        f.write(b"conv4,3,0.1,extra\nconv4,4,\xff\nconv7,5,0.")
    with bench.resumable_csv(path, columns, key) as (done, write):
        assert done == {("conv4", "0"), ("conv4", "1"), ("", "1")}
        write({"net": "conv7", "seed": 5, "score": 0.25})
    lines = path.read_bytes().splitlines()
    assert lines[0] == b"net,seed,score" and lines[-1] == b"conv7,5,0.25"
    assert b"conv7,5,0." not in lines[:-1]  # the row cut short was cut off, not continued
    with bench.resumable_csv(path, columns, key) as (done, _):
        assert ("conv7", "5") in done and len(done) == 4


def test_resumable_csv_refuses_another_header_and_a_second_writer(tmp_path):
    path = tmp_path / "runs.csv"
    with bench.resumable_csv(path, ["a", "b"], ["a"]):
        with pytest.raises(bench.BenchError, match="another process is writing"):
            with bench.resumable_csv(path, ["a", "b"], ["a"]):
                pass
    with pytest.raises(bench.BenchError, match=r"has the columns \['a', 'b'\], not "
                                               r"\['a', 'b', 'c'\]"):
        with bench.resumable_csv(path, ["a", "b", "c"], ["a"]):
            pass

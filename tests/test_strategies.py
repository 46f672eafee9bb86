"""The strategies as schedules: ranking rules and what each algorithm trains, on scripted scores."""

import pytest
import torch

from flexsk._strategies import STRATEGIES, best_of
from flexsk._training import Evaluation, Stopping, Tuned, rank
from flexsk._units import Unit


def ev(accuracy, loss=1.0):
    return Evaluation(accuracy, loss)


def as_evaluation(score):
    return score if isinstance(score, Evaluation) else ev(score)


class ScriptedFineTuning:
    """Stands in for FineTuning: tune returns scripted evaluations, calls are logged."""

    def __init__(self, tuned_scores, proxy_scores=None):
        self.units = [Unit(name, (name,)) for name in ("conv1", "conv2", "fc1", "fc2")]
        self.pretrained = torch.nn.Linear(1, 1)
        self.stopping = Stopping(max_epochs=7, patience=3)
        self.tuned_scores = tuned_scores
        self.proxy = {k: as_evaluation(v) for k, v in (proxy_scores or {}).items()}
        self.calls = []

    def tune(self, key, *, start=None, stopping=None, keep_best=True):
        self.calls.append(dict(key=key, start=start, stopping=stopping, keep_best=keep_best))
        module = torch.nn.Linear(1, 1)
        module.key = key
        one_epoch = stopping is not None and stopping.max_epochs == 1
        module.one_epoch = one_epoch
        return Tuned(module, as_evaluation(self.tuned_scores.get(key, 0.0)),
                     1 if one_epoch else 7, 1)

    def tune_many(self, keys):
        return {key: self.tune(key) for key in keys}

    def proxy_evaluations(self, donor):
        self.calls.append(dict(key="proxies", donor=donor))
        return {unit.name: self.proxy[unit.name] for unit in self.units}


def test_best_of_ranks_by_accuracy_then_loss_then_order():
    assert best_of({"a": ev(0.5), "b": ev(0.7), "c": ev(0.7), "all": ev(0.7)}) == "b"
    assert best_of({"a": ev(0.5), "all": ev(0.5)}) == "a"
    assert best_of({"a": ev(0.5), "all": ev(0.6)}) == "all"
    # accuracy ties go to the lower validation loss, whatever the order
    assert best_of({"a": ev(0.7, 0.9), "b": ev(0.7, 0.4), "all": ev(0.7, 0.5)}) == "b"
    assert best_of({"a": ev(0.7, 0.9), "all": ev(0.7, 0.5)}) == "all"
    # accuracy comes first: a lower loss does not beat a higher accuracy
    assert best_of({"a": ev(0.6, 0.1), "b": ev(0.7, 2.0)}) == "b"
    # diverged runs (non-finite loss) come last
    assert best_of({"a": ev(0.9, float("nan")), "b": ev(0.2, 2.0)}) == "b"


def test_rank_orders_every_key():
    evaluations = {"a": ev(0.7, 0.9), "b": ev(0.7, 0.4), "c": ev(0.8, 3.0), "d": ev(0.1, 0.1)}
    assert rank(evaluations) == ["c", "b", "a", "d"]


def test_best_of_plain_numbers_rank_by_value_then_order():
    assert best_of({"a": 0.5, "b": 0.7, "c": 0.7}) == "b"


def test_flex_trains_every_unit_and_all_and_keeps_best():
    ft = ScriptedFineTuning({"conv1": 0.6, "conv2": 0.8, "fc1": 0.7, "fc2": 0.5, "all": 0.75})
    outcome = STRATEGIES["flex"](ft)
    assert [c["key"] for c in ft.calls] == ["conv1", "conv2", "fc1", "fc2", "all"]
    assert all(c["start"] is None for c in ft.calls)  # every candidate from the pretrained net
    assert outcome.selected == "conv2"
    assert list(outcome.proxy_scores) == ["conv1", "conv2", "fc1", "fc2"]
    assert outcome.proxy_scores["fc1"].accuracy == 0.7
    assert set(outcome.tuned) == {"conv1", "conv2", "fc1", "fc2", "all"}


@pytest.mark.parametrize("scores, expected", [
    ({"conv1": 0.7, "conv2": 0.7, "fc1": 0.7, "fc2": 0.7, "all": 0.7}, "conv1"),
    ({"conv1": 0.6, "conv2": 0.7, "fc1": 0.7, "fc2": 0.5, "all": 0.7}, "conv2"),
    ({"conv1": 0.6, "conv2": 0.7, "fc1": 0.7, "fc2": 0.5, "all": 0.71}, "all"),
    # accuracy ties broken by validation loss
    ({"conv1": ev(0.7, 0.5), "conv2": ev(0.7, 0.3), "fc1": ev(0.7, 0.4), "fc2": 0.5,
      "all": ev(0.7, 0.35)}, "conv2"),
    ({"conv1": ev(0.7, 0.5), "conv2": ev(0.7, 0.3), "fc1": 0.6, "fc2": 0.5,
      "all": ev(0.7, 0.2)}, "all"),
])
def test_flex_ties(scores, expected):
    assert STRATEGIES["flex"](ScriptedFineTuning(scores)).selected == expected


def test_fast_follows_algorithm_2():
    ft = ScriptedFineTuning({"fc1": 0.8, "all": 0.75},
                            proxy_scores={"conv1": 0.3, "conv2": 0.6, "fc1": 0.6, "fc2": 0.5})
    outcome = STRATEGIES["fast"](ft)
    keys = [c["key"] for c in ft.calls]
    assert keys == ["all", "proxies", "conv2"]  # earliest of the fully tied proxies
    assert ft.calls[1]["donor"].key == "all"  # proxies take units from ft-all
    assert ft.calls[2]["start"] is None  # line 8: tune from the pretrained weights
    assert {k: v.accuracy for k, v in outcome.proxy_scores.items()} == {
        "conv1": 0.3, "conv2": 0.6, "fc1": 0.6, "fc2": 0.5}
    assert set(outcome.tuned) == {"conv2", "all"}


def test_fast_breaks_proxy_ties_by_loss():
    ft = ScriptedFineTuning({"fc1": 0.8, "all": 0.75},
                            proxy_scores={"conv1": 0.3, "conv2": ev(0.6, 0.8),
                                          "fc1": ev(0.6, 0.5), "fc2": 0.5})
    STRATEGIES["fast"](ft)
    assert ft.calls[2]["key"] == "fc1"


@pytest.mark.parametrize("unit_score, all_score, expected", [
    (0.8, 0.75, "fc1"), (0.75, 0.75, "fc1"), (0.74, 0.75, "all"),
    (ev(0.75, 0.5), ev(0.75, 0.6), "fc1"), (ev(0.75, 0.6), ev(0.75, 0.5), "all")])
def test_fast_keeps_unit_unless_all_validates_better(unit_score, all_score, expected):
    ft = ScriptedFineTuning({"fc1": unit_score, "all": all_score},
                            proxy_scores={"conv1": 0.1, "conv2": 0.1, "fc1": 0.9, "fc2": 0.1})
    assert STRATEGIES["fast"](ft).selected == expected


def test_faster_uses_one_epoch_of_ft_all_and_always_returns_the_unit():
    ft = ScriptedFineTuning({"fc2": 0.2, "all": 0.99},
                            proxy_scores={"conv1": 0.1, "conv2": 0.1, "fc1": 0.1, "fc2": 0.4})
    outcome = STRATEGIES["faster"](ft)
    first = ft.calls[0]
    assert first["key"] == "all" and first["stopping"].max_epochs == 1
    assert first["stopping"].patience is None
    assert first["keep_best"] is False  # a single epoch, kept even if validation got worse
    assert ft.calls[1]["donor"].one_epoch
    assert outcome.selected == "fc2"
    assert set(outcome.tuned) == {"fc2"}  # the one-epoch ft-all is not a candidate


@pytest.mark.parametrize("n_fc_units, expected", [(1, "fc2"), (2, ("fc1", "fc2"))])
def test_ft_fc_tunes_last_units(n_fc_units, expected):
    ft = ScriptedFineTuning({})
    outcome = STRATEGIES["ft-fc"](ft, n_fc_units=n_fc_units)
    assert outcome.selected == expected
    assert [c["key"] for c in ft.calls] == [expected]
    assert outcome.proxy_scores == {}


def test_ft_all():
    ft = ScriptedFineTuning({"all": 0.5})
    outcome = STRATEGIES["ft-all"](ft)
    assert outcome.selected == "all" and [c["key"] for c in ft.calls] == ["all"]


def test_ft_ss_trains_the_ss_key():
    ft = ScriptedFineTuning({"ss": 0.5})
    assert STRATEGIES["ft-ss"](ft).selected == "ss"
    assert [c["key"] for c in ft.calls] == ["ss"]


@pytest.mark.parametrize("name, runs, runs_with_pairs", [
    # 4 units; max_units=2 adds one pair per other unit (3) to single-unit strategies
    ("flex", 5, 8), ("fast", 2, 5), ("faster", 2, 5), ("rgn-unit", 1, 4),
    ("halving", 8, 11),  # rungs of 5 and 2 candidates, then the survivor's run
    ("ft-all", 1, 1), ("ft-fc", 1, 1), ("ft-ss", 1, 1), ("auto-rgn", 1, 1), ("lp-ft", 2, 2),
    ("llrd", 1, 1)])
def test_every_strategy_is_one_record(name, runs, runs_with_pairs):
    record = STRATEGIES[name]
    assert record.name == name
    assert record.total_runs(4) == runs
    assert record.total_runs(4, max_units=2) == runs_with_pairs
    assert record.single_unit == (name in ("flex", "fast", "faster", "rgn-unit", "halving"))

"""The strategies as schedules: tie rules and what each algorithm trains, on scripted scores."""

import pytest
import torch

from flexsk._training import Tuned
from flexsk.strategies import STRATEGIES, best_of
from flexsk.units import Unit


class ScriptedFineTuning:
    """Stands in for FineTuning: tune/score return scripted accuracies, calls are logged."""

    def __init__(self, tuned_scores, proxy=None, one_epoch_marker=0.123):
        self.units = [Unit(name, (name,)) for name in ("conv1", "conv2", "fc1", "fc2")]
        self.pretrained = torch.nn.Linear(1, 1)
        self.tuned_scores = tuned_scores
        self.proxy = proxy or {}
        self.calls = []

    def tune(self, key, *, start=None, selection=None, max_epochs=None, patience="default",
             keep="best"):
        self.calls.append(dict(key=key, start=start, max_epochs=max_epochs, patience=patience,
                               keep=keep))
        module = torch.nn.Linear(1, 1)
        module.key = key
        one_epoch = max_epochs == 1
        module.one_epoch = one_epoch
        return Tuned(module, self.tuned_scores.get(key, 0.0), 1 if one_epoch else 7, 1)

    def tune_many(self, keys):
        return {key: self.tune(key) for key in keys}

    def proxy_scores(self, donor):
        self.calls.append(dict(key="proxies", donor=donor))
        return {unit.name: self.proxy[unit.name] for unit in self.units}


def test_best_of_prefers_earliest_key_on_ties():
    assert best_of({"a": 0.5, "b": 0.7, "c": 0.7, "all": 0.7}) == "b"
    assert best_of({"a": 0.5, "all": 0.5}) == "a"
    assert best_of({"a": 0.5, "all": 0.6}) == "all"


def test_flex_trains_every_unit_and_all_and_keeps_best():
    ft = ScriptedFineTuning({"conv1": 0.6, "conv2": 0.8, "fc1": 0.7, "fc2": 0.5, "all": 0.75})
    outcome = STRATEGIES["flex"](ft)
    assert [c["key"] for c in ft.calls] == ["conv1", "conv2", "fc1", "fc2", "all"]
    assert all(c["start"] is None for c in ft.calls)  # every candidate from the pretrained net
    assert outcome.selected == "conv2"
    assert list(outcome.proxy_scores) == ["conv1", "conv2", "fc1", "fc2"]
    assert outcome.proxy_scores["fc1"] == 0.7
    assert set(outcome.tuned) == {"conv1", "conv2", "fc1", "fc2", "all"}


@pytest.mark.parametrize("scores, expected", [
    ({"conv1": 0.7, "conv2": 0.7, "fc1": 0.7, "fc2": 0.7, "all": 0.7}, "conv1"),
    ({"conv1": 0.6, "conv2": 0.7, "fc1": 0.7, "fc2": 0.5, "all": 0.7}, "conv2"),
    ({"conv1": 0.6, "conv2": 0.7, "fc1": 0.7, "fc2": 0.5, "all": 0.71}, "all"),
])
def test_flex_ties(scores, expected):
    assert STRATEGIES["flex"](ScriptedFineTuning(scores)).selected == expected


def test_fast_follows_algorithm_2():
    ft = ScriptedFineTuning({"fc1": 0.8, "all": 0.75},
                            proxy={"conv1": 0.3, "conv2": 0.6, "fc1": 0.6, "fc2": 0.5})
    outcome = STRATEGIES["fast"](ft)
    keys = [c["key"] for c in ft.calls]
    assert keys == ["all", "proxies", "conv2"]  # earliest of the tied proxies
    assert ft.calls[1]["donor"].key == "all"  # proxies take units from ft-all
    assert ft.calls[2]["start"] is None  # line 8: tune from the pretrained weights
    assert outcome.proxy_scores == {"conv1": 0.3, "conv2": 0.6, "fc1": 0.6, "fc2": 0.5}
    assert set(outcome.tuned) == {"conv2", "all"}


@pytest.mark.parametrize("unit_score, all_score, expected", [
    (0.8, 0.75, "fc1"), (0.75, 0.75, "fc1"), (0.74, 0.75, "all")])
def test_fast_keeps_unit_unless_all_is_strictly_better(unit_score, all_score, expected):
    ft = ScriptedFineTuning({"fc1": unit_score, "all": all_score},
                            proxy={"conv1": 0.1, "conv2": 0.1, "fc1": 0.9, "fc2": 0.1})
    assert STRATEGIES["fast"](ft).selected == expected


def test_faster_uses_one_epoch_of_ft_all_and_always_returns_the_unit():
    ft = ScriptedFineTuning({"fc2": 0.2, "all": 0.99},
                            proxy={"conv1": 0.1, "conv2": 0.1, "fc1": 0.1, "fc2": 0.4})
    outcome = STRATEGIES["faster"](ft)
    first = ft.calls[0]
    assert first["key"] == "all" and first["max_epochs"] == 1 and first["patience"] is None
    assert first["keep"] == "last"  # a single epoch, kept even if validation got worse
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


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_declares_its_number_of_runs(name):
    assert STRATEGIES[name].n_runs(4) >= 1

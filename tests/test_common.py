"""scikit-learn's own estimator checks, on a FlexTuner over a small tabular net."""

from collections import OrderedDict

import pytest
import torch
from skorch import NeuralNetClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks
from torch import nn

from flexsk import FlexTuner

# Every check that must fail, with the reason. At most three.
EXPECTED_FAILED_CHECKS = {
    "check_estimators_overwrite_params": (
        "joblib.hash of a deep-copied torch tensor differs from the original's, so the "
        "base net's parameters never hash equal after the check's deepcopy."),
}


def _tabular_tuner():
    torch.manual_seed(0)
    module = nn.Sequential(OrderedDict(
        hidden=nn.Sequential(nn.LazyLinear(16), nn.ReLU()),  # takes any feature count
        out=nn.Linear(16, 10),
    ))
    net = NeuralNetClassifier(module, criterion=nn.CrossEntropyLoss,
                              optimizer=torch.optim.Adam, lr=2e-2, batch_size=32)
    return FlexTuner(net, strategy="ft-all", max_epochs=40, patience=10, random_state=0)


# The checks fit on random data, where nothing improves on the start: the SelectionWarning
# that says so is expected.
@pytest.mark.filterwarnings("ignore::flexsk.SelectionWarning")
@parametrize_with_checks([_tabular_tuner()],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_compatible(estimator, check):
    check(estimator)

"""
===========================================
Validation data through a Pipeline's steps
===========================================

In a :class:`~sklearn.pipeline.Pipeline`, the steps before
:class:`~flexsk.FlexTuner` transform the training images. A fixed
validation set (``X_val``, ``y_val``) must go through the same steps: the
tuner selects its unit and stops its training runs on validation data, so
validation images that skip the preprocessing make it judge the network on
inputs it never sees in use. scikit-learn's metadata routing sends
``X_val`` through the fitted steps. This example shows the recipe, what
goes wrong without it, and the error that a missing request raises.
"""

# %%
# Images on another scale
# -----------------------
# The source network was pretrained on pixel values in [0, 1]. The target
# images are blurred, and come as a camera stores them, on a scale of 0 to
# 255. A small scaler maps them back to [0, 1], using the range of the
# images it saw in ``fit``.
import pickle

import numpy as np
import sklearn
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import UnsetMetadataPassedError
from sklearn.pipeline import Pipeline

from flexsk import FlexTuner
from flexsk.datasets import make_digits_shift, train_val_test_split
from flexsk.zoo import load_source_net

torch.set_num_threads(1)


class PixelScaler(TransformerMixin, BaseEstimator):
    """Map pixel values to [0, 1], by the range of the images seen in fit."""

    def fit(self, X, y=None):
        self.min_, self.max_ = float(np.min(X)), float(np.max(X))
        return self

    def transform(self, X):
        scaled = (np.asarray(X) - self.min_) / (self.max_ - self.min_)
        return scaled.astype(np.float32)


net = load_source_net("conv4")
target = make_digits_shift("blur")
X_train, y_train, X_val, y_val, X_test, y_test = train_val_test_split(
    target, 10, random_state=0
)
X_train, X_val, X_test = (np.round(255 * X) for X in (X_train, X_val, X_test))
print(f"pixel values from {X_train.min():.0f} to {X_train.max():.0f}")

# %%
# Without routing, validation data skip the scaler
# ------------------------------------------------
# A fit parameter addressed to a step, ``tuner__X_val``, goes straight to
# that step: the scaler never sees ``X_val``, and the network is validated
# on pixel values up to 255. The validation scores below, and the pick made
# from them, are those of images that the pipeline never gives the network.
pipe = Pipeline(
    [("scale", PixelScaler()), ("tuner", FlexTuner(net, random_state=0))]
)
pipe.fit(X_train, y_train, tuner__X_val=X_val, tuner__y_val=y_val)
tuner = pipe["tuner"]
print(f"validation accuracy of the candidates: {tuner.validation_scores_}")
print(f"selected {tuner.selected_unit_!r}; test accuracy "
      f"{pipe.score(X_test, y_test):.3f}")

# %%
# The recipe: metadata routing
# ----------------------------
# Three things together:
#
# - ``sklearn.set_config(enable_metadata_routing=True)``;
# - ``Pipeline(..., transform_input=["X_val"])``, so that the pipeline
#   passes ``X_val`` through the fitted steps before the last one;
# - ``FlexTuner(...).set_fit_request(X_val=True, y_val=True)``, so that the
#   tuner receives ``X_val`` and ``y_val``.
#
# The validation data are then passed to the pipeline's ``fit`` under their
# own names.
sklearn.set_config(enable_metadata_routing=True)

tuner = FlexTuner(net, random_state=0).set_fit_request(X_val=True, y_val=True)
pipe = Pipeline(
    [("scale", PixelScaler()), ("tuner", tuner)], transform_input=["X_val"]
)
pipe.fit(X_train, y_train, X_val=X_val, y_val=y_val)
tuner = pipe["tuner"]
print(f"validation accuracy of the candidates: {tuner.validation_scores_}")
print(f"selected {tuner.selected_unit_!r}; test accuracy "
      f"{pipe.score(X_test, y_test):.3f}")

# %%
# Without the request, routing refuses
# ------------------------------------
# With routing on, a tuner that has not requested ``X_val`` and ``y_val``
# makes the pipeline raise rather than drop them silently:
pipe = Pipeline(
    [("scale", PixelScaler()), ("tuner", FlexTuner(net, random_state=0))],
    transform_input=["X_val"],
)
try:
    pipe.fit(X_train, y_train, X_val=X_val, y_val=y_val)
except UnsetMetadataPassedError as error:
    first_sentences = ". ".join(str(error).split(". ")[:2])
    print(f"{type(error).__name__}: {first_sentences}.")

# %%
# Metadata routing is a global setting of scikit-learn; this example turns
# it off again. Without a fixed validation set, the question does not arise:
# the tuner then holds out ``validation_fraction`` of the training images it
# receives, after the preprocessing.
sklearn.set_config(enable_metadata_routing=False)

# %%
# The fitted pipeline, tuner included, pickles like any scikit-learn
# estimator: keep it, or send it to another process.
restored = pickle.loads(pickle.dumps(pipe))
print(restored)

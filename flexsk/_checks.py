"""Argument checks shared by :mod:`flexsk.datasets` and :mod:`flexsk.zoo`.

Public functions declare their constraints with scikit-learn's
``validate_params``; this module holds the shared constraints and the two
checks it cannot express: an integer that is not a bool (``Interval(Integral,
...)`` accepts ``True``), and an image side that is a multiple of 8.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, InvalidParameterError

__all__ = ["IMAGE_SIZE", "Number", "count", "real", "INTEGER", "check_not_bool",
           "check_image_size"]


class Number(Interval):
    """``Interval`` that refuses bools: ``True`` is neither a count nor a rate."""

    def is_satisfied_by(self, val):
        return not isinstance(val, (bool, np.bool_)) and super().is_satisfied_by(val)


def count(low=1):
    """The constraint of a count: an int (not a bool) of at least ``low``."""
    return Number(Integral, low, None, closed="left")


def real(low, high, closed):
    """The constraint of a real number (not a bool) in an interval."""
    return Number(Real, low, high, closed=closed)


#: Any int but a bool (``n_jobs``: negative values count back from the CPUs).
INTEGER = Number(Integral, None, None, closed="neither")

#: An image side in pixels: at least 8, the digits' native size.
IMAGE_SIZE = count(8)


def check_not_bool(caller, **values):
    """Refuse ``True`` and ``False`` where an integer is meant."""
    for name, value in values.items():
        if isinstance(value, (bool, np.bool_)):
            raise InvalidParameterError(
                f"The {name!r} parameter of {caller} must be an int, not a bool. "
                f"Got {value!r} instead.")


def check_image_size(caller, image_size, *, multiple_of=1):
    """``image_size`` as an int, checked to be a multiple of ``multiple_of``.

    The range (``IMAGE_SIZE``) is the caller's ``validate_params`` job.
    """
    check_not_bool(caller, image_size=image_size)
    if image_size % multiple_of:
        raise InvalidParameterError(
            f"The 'image_size' parameter of {caller} must be a multiple of {multiple_of}. "
            f"Got {image_size!r} instead.")
    return int(image_size)

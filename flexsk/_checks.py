"""Argument checks shared by :mod:`flexsk.datasets` and :mod:`flexsk.zoo`.

Public functions declare their constraints with scikit-learn's
``validate_params``; this module holds the shared constraints and the two
checks it cannot express: an integer that is not a bool (``Interval(Integral,
...)`` accepts ``True``), and an image side that is a multiple of 8.
"""

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval, InvalidParameterError

__all__ = ["IMAGE_SIZE", "check_not_bool", "check_image_size"]

#: An image side in pixels: at least 8, the digits' native size.
IMAGE_SIZE = Interval(Integral, 8, None, closed="left")


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

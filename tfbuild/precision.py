"""The one list of precisions, and the rule every deployment stage applies to them.

A leaf module (no TensorFlow, nothing of the engine): the config schema and the
converters in tfbuild.tf share it.
"""
from __future__ import annotations

from typing import Optional

from .errors import CalibrationError, ConfigError

PRECISIONS = ("FP32", "FP16", "INT8")   # written in any case, kept upper case


def check_precision(section: str, precision, path: Optional[str], random: bool, num_samples: int) -> str:
    """The precision in upper case, and INT8 has its calibration data."""
    if not isinstance(precision, str) or precision.upper() not in PRECISIONS:
        raise ConfigError(f"{section}.precision={precision!r} is unknown: use one of {', '.join(PRECISIONS)}")
    if path and random:
        raise ConfigError(f"set only one of {section}.calibration.path and {section}.calibration.random")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise CalibrationError(f"{section}.calibration.num_samples must be an integer >= 1, got {num_samples!r}")
    precision = precision.upper()
    if precision == "INT8" and not (path or random):
        raise CalibrationError(f"{section}.precision=INT8 needs calibration data: set "
                               f"{section}.calibration.path to a .npy/.npz or an image folder "
                               f"(or {section}.calibration.random=true for a demo)")
    return precision

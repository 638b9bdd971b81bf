"""Input checks that fail before a run starts, naming the field, the value and the allowed range."""

import math


class ConfigError(ValueError):
    """Invalid scenario, spec or profile input; the message names field, value and allowed range."""


def check_range(field, value, lo=-math.inf, hi=math.inf, *, lo_open=False, hi_open=False):
    """Return ``float(value)`` if it lies in the interval, else raise ConfigError naming ``field``."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{field}: {value!r} is not a number") from None
    below = x <= lo if lo_open else x < lo
    above = x >= hi if hi_open else x > hi
    if math.isnan(x) or below or above:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ConfigError(f"{field}: {value!r} outside the allowed range {left}{lo}, {hi}{right}")
    return x


def check_choice(field, value, choices):
    """Return ``value`` if it is one of ``choices`` (any iterable of names), else raise ConfigError."""
    allowed = sorted(choices)
    if value not in allowed:
        raise ConfigError(f"{field}: {value!r} is not one of {allowed}")
    return value


def check_seeds(field, text):
    """Return the comma-separated integers of ``text`` (seeds: at least one, each >= 0), else raise ConfigError."""
    try:
        values = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"{field}: {text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 0:
        raise ConfigError(f"{field}: {text!r} must list at least one integer >= 0")
    return values


def check_finite(field, array):
    """Raise ConfigError if a numeric array holds NaN or inf, naming the first bad position."""
    import numpy as np

    a = np.asarray(array, dtype=float)
    bad = ~np.isfinite(a)
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ConfigError(f"{field}: non-finite value {a[pos]} at index {pos}; all values must be finite")
    return a

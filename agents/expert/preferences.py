"""Plain-language prosumer preferences -> structured soft constraints (a small deterministic parser).

A preference becomes one ``Preference``: a quantity of the prosumer that must stay at most (or
at least) a bound during some steps of the day.  The models (reference.py, joint.py) add one
slack ε_t >= 0 per concerned step and the penalty ``PREFERENCE_PENALTY_EUR * Δt * Σ ε_t`` to the
objective, so a preference is never a hard ban: it yields when it cannot hold (the paper's
soft constraints with penalty 1000).  Free text outside the patterns below raises ConfigError
naming the prosumer and the text; the LLM expert workflow handles free text.

Supported patterns (case-insensitive; times "18:00", "18", "6 am", "6pm", "18h", on 15-minute
steps; a trailing period is ignored).  ``<when>`` is optional and one of: "at night"
(22:00-06:00), "before T", "after T", "between T1 and T2", "from T1 to T2" (wrapping past
midnight when T1 > T2); without it the preference holds all day.

| text                                                       | quantity     | sense | bound          |
|------------------------------------------------------------|--------------|-------|----------------|
| "don't / do not / never run (use) the generator <when>"     | gen_kw       | max   | 0 kW           |
| "no generator <when>"                                      | gen_kw       | max   | 0 kW           |
| "keep the battery above X% <when>" (of total capacity)     | soc_kwh      | min   | X/100 x cap.   |
| "keep the battery above X kWh <when>"                      | soc_kwh      | min   | X kWh          |
| "limit grid import to X kW <when>" (meter power)           | net_kw       | max   | X kW           |
| "limit grid export to X kW <when>" (meter injection)       | export_kw    | max   | X kW           |
| "run the controllable load <when>" (allowed only then)     | cl_kw        | max   | 0 kW outside   |
| "don't / do not / never curtail the PV <when>"             | curtail_kw   | max   | 0 kW           |

Quantities are per prosumer, summed over its units, in kW (kWh for ``soc_kwh``, the stored
energy at the end of the step); ``net_kw`` is the meter power in the load convention
(load + CL + battery - PV - generator), ``export_kw = -net_kw``.
"""

import re
from dataclasses import dataclass

import numpy as np

from simulators.units import STEP_H, STEPS_PER_DAY
from simulators.validation import ConfigError

PREFERENCE_PENALTY_EUR = 1000.0
"""penalty per kW (kWh for SoC) of violation and per hour: Δt x 1000 EUR per step (the paper's 1000)"""
NIGHT = (22.0, 6.0)
"""'at night' means 22:00-06:00"""
QUANTITY_DEVICE = {"gen_kw": "generators", "soc_kwh": "batteries", "net_kw": None, "export_kw": None,
                   "cl_kw": "controllable_loads", "curtail_kw": "pv"}
"""quantity -> device list of ProsumerSpec it needs (None: every prosumer has it)"""


@dataclass(frozen=True)
class Preference:
    """``quantity`` <= bound (sense 'max') or >= bound ('min') at every step of ``steps``."""

    text: str
    quantity: str
    """one of QUANTITY_DEVICE"""
    sense: str
    """'max' or 'min'"""
    bound: float
    """kW, or kWh for soc_kwh"""
    steps: tuple
    """steps of the day (0..95) at which the preference holds"""

    @property
    def mask(self):
        """(96,) bool: the steps of the day the preference concerns."""
        m = np.zeros(STEPS_PER_DAY, dtype=bool)
        m[list(self.steps)] = True
        return m


# ---- time clauses ----------------------------------------------------------------------------
_TIME = r"(\d{1,2}(?::\d{2})?\s*(?:am|pm|h)?)"
_WHEN = [
    (re.compile(r"\s+(?:at|during the) night$"), lambda m: NIGHT),
    (re.compile(rf"\s+between {_TIME} and {_TIME}$"), lambda m: (_hour(m[1]), _hour(m[2]))),
    (re.compile(rf"\s+from {_TIME} to {_TIME}$"), lambda m: (_hour(m[1]), _hour(m[2]))),
    (re.compile(rf"\s+(?:before|until) {_TIME}$"), lambda m: (0.0, _hour(m[1]))),
    (re.compile(rf"\s+(?:after|from) {_TIME}$"), lambda m: (_hour(m[1]), 24.0)),
]


def _hour(text):
    """'18:00', '6 am', '6pm', '18h', '18' -> hours as float; ConfigError-free (caller checks)."""
    m = re.fullmatch(r"(\d{1,2})(?::(\d{2}))?\s*(am|pm|h)?", text.strip())
    hour, minute, suffix = int(m[1]), int(m[2] or 0), m[3]
    if suffix == "pm" and hour < 12:
        hour += 12
    if suffix == "am" and hour == 12:
        hour = 0
    return hour + minute / 60.0


def _window_steps(start_h, end_h):
    """Steps of [start_h, end_h), wrapping past midnight when start_h > end_h; None if invalid."""
    for h in (start_h, end_h):
        if not 0.0 <= h <= 24.0 or abs(h / STEP_H - round(h / STEP_H)) > 1e-9:
            return None
    start, end = int(round(start_h / STEP_H)), int(round(end_h / STEP_H))
    if start == end or start >= STEPS_PER_DAY:
        return None
    if start < end:
        return tuple(range(start, end))
    return tuple(range(start, STEPS_PER_DAY)) + tuple(range(0, end))


def _split_when(text):
    """(subject, (start_h, end_h) or None) after removing a trailing time clause."""
    for pattern, window in _WHEN:
        m = pattern.search(text)
        if m:
            return text[: m.start()], window(m)
    return text, None


# ---- subjects ----------------------------------------------------------------------------------
_NUM = r"(\d+(?:\.\d+)?)"
_NOT = r"(?:don't|do not|never)"
# (pattern, quantity, sense, bound(match, spec), window is the allowed time instead of the ban)
_SUBJECTS = [
    (rf"{_NOT} (?:run|use|start) the (?:generator|cdg)", "gen_kw", "max", lambda m, s: 0.0, False),
    (r"no (?:generator|cdg)(?: use)?", "gen_kw", "max", lambda m, s: 0.0, False),
    (rf"keep the (?:battery|bess)(?: charge| soc)? (?:above|over|at least) {_NUM}\s*(?:%|percent)",
     "soc_kwh", "min", lambda m, s: float(m[1]) / 100.0 * sum(b.capacity_kwh for b in s.batteries), False),
    (rf"keep the (?:battery|bess)(?: charge| soc)? (?:above|over|at least) {_NUM}\s*kwh",
     "soc_kwh", "min", lambda m, s: float(m[1]), False),
    (rf"limit (?:the )?grid imports? to {_NUM}\s*kw", "net_kw", "max", lambda m, s: float(m[1]), False),
    (rf"limit (?:the )?grid exports? to {_NUM}\s*kw", "export_kw", "max", lambda m, s: float(m[1]), False),
    (r"run the (?:controllable load|cl)", "cl_kw", "max", lambda m, s: 0.0, True),
    (rf"{_NOT} curtail (?:the )?(?:pv|solar)", "curtail_kw", "max", lambda m, s: 0.0, False),
]
_SUBJECTS = [(re.compile(p + "$"), *rest) for p, *rest in _SUBJECTS]


def parse_preference(text, spec, index=0):
    """Parse one preference of ``spec`` into a Preference; ConfigError naming prosumer and text."""
    where = f"prosumer {spec.name!r}.preferences[{index}]"
    if not isinstance(text, str):
        raise ConfigError(f"{where}: {text!r} is not a string")
    clean = re.sub(r"\s+", " ", text.strip().lower().replace("\u2019", "'")).rstrip(".")
    subject, window = _split_when(clean)
    for pattern, quantity, sense, bound, window_allows in _SUBJECTS:
        m = pattern.fullmatch(subject)
        if not m:
            continue
        if window_allows and window is None:
            raise ConfigError(f"{where}: {text!r} needs a time ('after 10:00', 'between 9 and 17', ...)")
        steps = tuple(range(STEPS_PER_DAY)) if window is None else _window_steps(*window)
        if steps is None:
            raise ConfigError(f"{where}: {text!r} has a time outside 0..24 h, not on a 15-minute step, "
                              "or an empty window")
        if window_allows:
            steps = tuple(sorted(set(range(STEPS_PER_DAY)) - set(steps)))
        device = QUANTITY_DEVICE[quantity]
        if device and not getattr(spec, device):
            raise ConfigError(f"{where}: {text!r} concerns {device}, but the prosumer has none")
        return Preference(text=text, quantity=quantity, sense=sense, bound=float(bound(m, spec)), steps=steps)
    raise ConfigError(f"{where}: {text!r} matches none of the supported patterns (see "
                      "agents/expert/preferences.py: generator off, battery above X% or X kWh, limit grid "
                      "import/export to X kW, run the controllable load after/before/between, don't curtail "
                      "the PV; each optionally 'at night', 'before T', 'after T', 'between T1 and T2')")


def parse_preferences(spec):
    """All preferences of ``spec`` as Preference objects (ConfigError on the first bad one)."""
    return [parse_preference(text, spec, i) for i, text in enumerate(spec.preferences)]


def violations(prefs, quantities, first_step=0):
    """Violation per step of each preference, from realized quantities.

    ``quantities``: dict quantity -> (T,) array of one prosumer for steps first_step..first_step+T-1.
    Returns (n_prefs, T) non-negative array in kW (kWh for SoC); 0 where a preference does not apply.
    """
    any_q = next(iter(quantities.values()))
    steps = first_step + np.arange(len(any_q))
    out = np.zeros((len(prefs), len(any_q)))
    for k, p in enumerate(prefs):
        x = np.asarray(quantities[p.quantity], dtype=float)
        excess = x - p.bound if p.sense == "max" else p.bound - x
        out[k] = np.where(p.mask[steps], np.maximum(excess, 0.0), 0.0)
    return out

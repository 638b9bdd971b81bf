"""Prosumer preferences -> structured preferences -> soft constraints.

A preference is given either as text or as a *structured preference* (a JSON object, the form
both this module's parser and the LLM expert produce):

    {"quantity": "generator_power", "sense": "at_most", "bound": 0, "unit": "kW",
     "from": "23:00", "to": "07:00", "applies": "inside", "text": "genset off 11pm-7am"}

- quantity: a key of QUANTITIES (the prosumer quantity it limits, summed over its units);
- sense: "at_most" | "at_least"; bound with its unit: W, kW, MW (powers), Wh, kWh, MWh
  (battery energy) or percent (battery energy as a share of the total capacity);
- from / to: "HH:MM" on 15-minute steps, or null (from the start / to the end of the day); a
  window with from > to wraps past midnight; both null = all day;
- applies: "inside" (the bound holds inside the window) or "outside" (it holds outside: "run the
  dishwasher only between 10:00 and 16:00" = flexible_load_power at most 0 kW outside 10-16);
- text: the original wording (optional, for reports).

This trusted module turns a structured preference into one ``Preference``: the quantity
normalized to kW (kWh for battery energy), the steps of the day it concerns. The models
(reference.py, joint.py) add one slack ε_t >= 0 per concerned step and the penalty
``PREFERENCE_PENALTY_EUR * Δt * Σ ε_t`` to the objective, so a preference is never a hard ban:
it yields when it cannot hold (the paper's soft constraints with penalty 1000).

Text is read by a small deterministic parser (case-insensitive; times "18:00", "18", "6 am",
"6pm", "18h"; a trailing period is ignored). ``<when>`` is optional and one of: "at night"
(22:00-06:00), "before T", "after T", "between T1 and T2", "from T1 to T2"; without it the
preference holds all day.

| text                                                       | quantity            | sense    | bound        |
|------------------------------------------------------------|---------------------|----------|--------------|
| "don't / do not / never run (use) the generator <when>"     | generator_power     | at_most  | 0 kW         |
| "no generator <when>"                                      | generator_power     | at_most  | 0 kW         |
| "keep the battery above X% <when>" (of total capacity)     | battery_energy      | at_least | X percent    |
| "keep the battery above X kWh <when>"                      | battery_energy      | at_least | X kWh        |
| "limit grid import to X kW <when>" (meter power)           | grid_import         | at_most  | X kW         |
| "limit grid export to X kW <when>" (meter injection)       | grid_export         | at_most  | X kW         |
| "run the controllable load <when>" (allowed only then)     | flexible_load_power | at_most  | 0 kW outside |
| "don't / do not / never curtail the PV <when>"             | pv_curtailment      | at_most  | 0 kW         |

Any other wording is refused with a ConfigError that says so: free text is the LLM expert's
job (agents/llm/preference_extraction.py turns it into the structure above).

Quantities are per prosumer, summed over its units, in kW (kWh for ``soc_kwh``, the stored
energy at the end of the step); ``net_kw`` is the meter power in the load convention
(load + CL + battery - PV - generator), ``export_kw = -net_kw``.
"""

import json
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
QUANTITIES = {"generator_power": "gen_kw", "battery_energy": "soc_kwh", "grid_import": "net_kw",
              "grid_export": "export_kw", "flexible_load_power": "cl_kw", "pv_curtailment": "curtail_kw"}
"""structured quantity -> model quantity (QUANTITY_DEVICE): generator output, stored battery energy,
power drawn from the grid, power fed into the grid, controllable-load power, PV power curtailed"""
SENSES = {"at_most": "max", "at_least": "min"}
UNITS = {"W": ("kW", 1e-3), "kW": ("kW", 1.0), "MW": ("kW", 1e3), "Wh": ("kWh", 1e-3), "kWh": ("kWh", 1.0),
         "MWh": ("kWh", 1e3), "percent": ("percent", None)}
"""unit -> (model unit, factor to it); percent is a share of the total battery capacity"""
APPLIES = ("inside", "outside")
TIMES = tuple(f"{k // 4:02d}:{15 * (k % 4):02d}" for k in range(STEPS_PER_DAY + 1))
"""every 15-minute time of the day, 00:00 .. 24:00"""
STRUCTURE_FIELDS = ("quantity", "sense", "bound", "unit", "from", "to", "applies")
"""fields of a structured preference (besides 'text'), in the order they are written"""


def _structure_schema():
    """JSON schema of a structured preference: anyOf the objects whose fields fit together (energy
    units and percent only for battery_energy; 'outside' only with a window; no start at 24:00)."""
    powers = [q for q in QUANTITIES if q != "battery_energy"]
    groups = [(["battery_energy"], ["Wh", "kWh", "MWh", "percent"]), (powers, ["W", "kW", "MW"])]
    windows = [({"enum": list(TIMES[:-1])}, {"enum": [None, *TIMES]}, list(APPLIES)),
               ({"const": None}, {"enum": list(TIMES)}, list(APPLIES)),
               ({"const": None}, {"const": None}, ["inside"])]
    return {"anyOf": [{"type": "object", "properties": {
        "quantity": {"enum": quantities}, "sense": {"enum": list(SENSES)}, "bound": {"type": "number", "minimum": 0},
        "unit": {"enum": units}, "from": start, "to": end, "applies": {"enum": applies}}}
        for quantities, units in groups for start, end, applies in windows]}


STRUCTURE_SCHEMA = _structure_schema()
"""the JSON schema the LLM's answer is decoded under (the trusted checks are in to_preference)"""


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
    (re.compile(rf"\s+(?:before|until) {_TIME}$"), lambda m: (None, _hour(m[1]))),
    (re.compile(rf"\s+(?:after|from) {_TIME}$"), lambda m: (_hour(m[1]), None)),
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


def _clock(hours):
    """Hours as float -> 'HH:MM' (None stays None)."""
    if hours is None:
        return None
    minutes = int(round(hours * 60))
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _split_when(text):
    """(subject, (start_h or None, end_h or None)) after removing a trailing time clause."""
    for pattern, window in _WHEN:
        m = pattern.search(text)
        if m:
            return text[: m.start()], window(m)
    return text, (None, None)


# ---- the hand-written parser: text -> structured preference -----------------------------------
_NUM = r"(\d+(?:\.\d+)?)"
_NOT = r"(?:don't|do not|never)"
# (pattern, quantity, sense, bound(match), unit, applies)
_SUBJECTS = [
    (rf"{_NOT} (?:run|use|start) the (?:generator|cdg)", "generator_power", "at_most", None, "kW", "inside"),
    (r"no (?:generator|cdg)(?: use)?", "generator_power", "at_most", None, "kW", "inside"),
    (rf"keep the (?:battery|bess)(?: charge| soc)? (?:above|over|at least) {_NUM}\s*(?:%|percent)",
     "battery_energy", "at_least", 1, "percent", "inside"),
    (rf"keep the (?:battery|bess)(?: charge| soc)? (?:above|over|at least) {_NUM}\s*kwh",
     "battery_energy", "at_least", 1, "kWh", "inside"),
    (rf"limit (?:the )?grid imports? to {_NUM}\s*kw", "grid_import", "at_most", 1, "kW", "inside"),
    (rf"limit (?:the )?grid exports? to {_NUM}\s*kw", "grid_export", "at_most", 1, "kW", "inside"),
    (r"run the (?:controllable load|cl)", "flexible_load_power", "at_most", None, "kW", "outside"),
    (rf"{_NOT} curtail (?:the )?(?:pv|solar)", "pv_curtailment", "at_most", None, "kW", "inside"),
]
_SUBJECTS = [(re.compile(p + "$"), *rest) for p, *rest in _SUBJECTS]
KNOWN_PHRASES = ("generator off, battery above X% or X kWh, limit grid import/export to X kW, run the "
                 "controllable load after/before/between, don't curtail the PV; each optionally 'at night', "
                 "'before T', 'after T', 'between T1 and T2'")


def parse_text(text):
    """Structured preference of one text the parser knows, else None (raises nothing)."""
    clean = re.sub(r"\s+", " ", text.strip().lower().replace("\u2019", "'")).rstrip(".")
    subject, (start_h, end_h) = _split_when(clean)
    for pattern, quantity, sense, group, unit, applies in _SUBJECTS:
        m = pattern.fullmatch(subject)
        if m:
            return {"quantity": quantity, "sense": sense, "bound": float(m[group]) if group else 0.0, "unit": unit,
                    "from": _clock(start_h), "to": _clock(end_h), "applies": applies, "text": text}
    return None


# ---- the trusted conversion: structured preference -> Preference -------------------------------
def _time_step(value, field, where):
    """'HH:MM' -> step 0..96; ConfigError naming the field otherwise."""
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", str(value))
    minutes = int(m[1]) * 60 + int(m[2]) if m else -1
    if not m or int(m[2]) >= 60 or not 0 <= minutes <= 24 * 60:
        raise ConfigError(f"{where}.{field}: {value!r} has a time outside 0..24 h ('HH:MM', 00:00..24:00)")
    if minutes % int(STEP_H * 60):
        raise ConfigError(f"{where}.{field}: {value!r} is not on a 15-minute step")
    return minutes // int(STEP_H * 60)


def window_steps(start, end, applies="inside", where="preference"):
    """Steps of the day where a preference holds: [start, end) in 'HH:MM' (None: 00:00 / 24:00),
    wrapping past midnight when start > end, or its complement for applies='outside'."""
    first = 0 if start is None else _time_step(start, "from", where)
    last = STEPS_PER_DAY if end is None else _time_step(end, "to", where)
    if first == last or first >= STEPS_PER_DAY:
        raise ConfigError(f"{where}: window from {start!r} to {end!r} is an empty window")
    if first < last:
        inside = tuple(range(first, last))
    else:
        inside = tuple(range(first, STEPS_PER_DAY)) + tuple(range(last))
    steps = inside if applies == "inside" else tuple(k for k in range(STEPS_PER_DAY) if k not in set(inside))
    if not steps:
        raise ConfigError(f"{where}: applies {applies!r} to the window {start!r}-{end!r} leaves no step of the day")
    return steps


def _choice(entry, field, allowed, where):
    value = entry.get(field)
    if value not in allowed:
        raise ConfigError(f"{where}.{field}: {value!r} is not one of {list(allowed)}")
    return value


def to_preference(entry, spec, where):
    """A structured preference (dict, see the module docstring) of ``spec`` -> Preference."""
    unknown = sorted(set(entry) - set(STRUCTURE_FIELDS) - {"text"})
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed: {[*STRUCTURE_FIELDS, 'text']}")
    quantity = QUANTITIES[_choice(entry, "quantity", QUANTITIES, where)]
    sense = SENSES[_choice(entry, "sense", SENSES, where)]
    unit = _choice(entry, "unit", UNITS, where)
    applies = _choice(entry, "applies", APPLIES, where) if "applies" in entry else "inside"
    bound = entry.get("bound")
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not np.isfinite(bound) or bound < 0:
        raise ConfigError(f"{where}.bound: {bound!r} must be a finite number >= 0")
    model_unit, factor = UNITS[unit]
    want = "kWh" if quantity == "soc_kwh" else "kW"
    if model_unit not in (want, "percent") or (model_unit == "percent" and quantity != "soc_kwh"):
        allowed = "Wh, kWh, MWh or percent" if want == "kWh" else "W, kW or MW"
        raise ConfigError(f"{where}.unit: {unit!r} does not fit {entry['quantity']!r} (use {allowed})")
    device = QUANTITY_DEVICE[quantity]
    text = preference_text(entry)
    if device and not getattr(spec, device):
        raise ConfigError(f"{where}: {text!r} concerns {device}, but the prosumer has none")
    if model_unit == "percent":
        if bound > 100:
            raise ConfigError(f"{where}.bound: {bound!r} percent must lie in 0..100")
        bound, factor = bound / 100.0, sum(b.capacity_kwh for b in spec.batteries)
    steps = window_steps(entry.get("from"), entry.get("to"), applies, where)
    return Preference(text=text, quantity=quantity, sense=sense, bound=float(bound * factor), steps=steps)


def preference_text(entry):
    """The wording of a preference (text, or a structured preference's 'text', else its JSON)."""
    return entry if isinstance(entry, str) else entry.get("text") or json.dumps(entry)


def parse_preference(entry, spec, index=0):
    """One preference of ``spec`` (text or structured) -> Preference; ConfigError naming prosumer and entry."""
    where = f"prosumer {spec.name!r}.preferences[{index}]"
    if isinstance(entry, dict):
        return to_preference(entry, spec, where)
    if not isinstance(entry, str):
        raise ConfigError(f"{where}: {entry!r} is neither a text nor a structured preference (an object)")
    structure = parse_text(entry)
    if structure is None:
        raise ConfigError(f"{where}: {entry!r} matches none of the supported patterns: the parser does not know "
                          f"this phrase (it knows: {KNOWN_PHRASES}). Free text is handled by the LLM expert: "
                          "python -m scenarios.expert_workflow --specs <file> turns it into a structured "
                          "preference and writes a spec file to run with")
    if structure["applies"] == "outside" and structure["from"] is None and structure["to"] is None:
        raise ConfigError(f"{where}: {entry!r} needs a time ('after 10:00', 'between 9 and 17', ...)")
    try:
        return to_preference(structure, spec, where)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {entry!r}: {str(exc).removeprefix(where + ': ')}") from None


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

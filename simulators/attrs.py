"""Attribute tables of the mosaik adapters, and the per-step input checks generated from them.

Every adapter (simulators/*/sim.py) describes each of its models by one ``ModelTable``: its
``create`` parameters, its inputs and outputs (``Attr``: mosaik name with the unit, the Python
field it maps to, the unit factor, a description, and for inputs whether it is required, its
default and whether it arrives time-shifted).  META, the adapter's input reading and output
serving, the recorder's columns, the scenario's wiring and the README's simulator reference
(``render_reference``) are all generated from these tables (simulators/tables.py holds them).

Input checks: ``InputReader.read`` turns a step's mosaik inputs into one (N,) array per input
attribute and checks every value: a required input that received nothing, a value that is not
a number (None, a string), NaN (unless the attribute allows it) or a value outside the entity's
allowed range raise InputError naming simulator, entity, attribute, value, allowed range and
time.  With ``on_invalid="clip"`` (every adapter's init parameter) a bad value is replaced by
the nearest allowed one (NaN/None by the attribute's default, else the lower bound), counted in
the entity's ``inputs_clipped`` output of the step and logged as a warning on the logger
``simulators.inputs``; a missing required input is always an error.
"""

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from simulators.validation import ConfigError, check_choice

ON_INVALID = ("raise", "clip")
COMBINE = {"sum": sum, "mean": lambda values: sum(values) / len(values)}
_EMPTY = {}
_REAL = (float, int, np.float64, np.float32, np.int64, np.int32)
"""types taken as numbers without a closer look (bool is not among them)"""
LOG = logging.getLogger("simulators.inputs")
REL_TOL = 1e-9
"""relative slack of range checks, for floating-point round-off of the producing simulator"""


class InputError(ConfigError):
    """An input value of a step is missing, not a number, or outside its allowed range."""


@dataclass(frozen=True)
class Attr:
    """One mosaik attribute of a model; units in the name."""

    name: str
    """mosaik attribute, e.g. 'P[MW]'"""
    field: str
    """the model's field, e.g. 'net_kw' (the recorder's column unless ``column`` says otherwise)"""
    factor: float = 1.0
    """mosaik value = field value x factor (1e-3: kW -> MW)"""
    doc: str = ""
    required: bool = True
    """inputs: a step without any value for it is an error"""
    default: float = math.nan
    """inputs: the value used when an optional input received nothing (mosaik units)"""
    shifted: bool = False
    """inputs: connected ``time_shifted=True`` with ``initial_data`` (the value of the last step)"""
    allowed: str = ""
    """inputs: the allowed range in words (per-entity ranges come from the entity's spec)"""
    nan_ok: bool = False
    """inputs: NaN is a meaningful value (e.g. the voltage of a power flow that did not converge)"""
    combine: str = "sum"
    """inputs: how the values of several sources combine, 'sum' or 'mean'"""
    record: bool = True
    """outputs: recorded by simulators/recorder in the scenario's run folder"""
    column: str = ""

    @property
    def recorder_column(self):
        return self.column or self.field


@dataclass(frozen=True)
class ModelTable:
    """A model of an adapter: create() parameters, inputs, outputs."""

    name: str
    doc: str
    params: dict = field(default_factory=dict)
    """create() parameter -> description"""
    inputs: tuple = ()
    outputs: tuple = ()

    def output(self, name):
        return next(a for a in self.outputs if a.name == name)

    def recorded(self):
        return tuple(a for a in self.outputs if a.record)


@dataclass(frozen=True)
class SimTable:
    """An adapter: its module (``python -m <module> HOST:PORT``), init parameters and models."""

    name: str
    module: str
    doc: str
    init: dict
    """init() parameter -> description"""
    models: tuple
    time: str
    """time semantics in words"""


def meta(sim, any_inputs=()):
    """mosaik META of a SimTable (time-based; ``any_inputs``: models that take any attribute)."""
    models = {}
    for m in sim.models:
        attrs = list(dict.fromkeys([a.name for a in m.inputs] + [a.name for a in m.outputs]))
        models[m.name] = {"public": True, "params": list(m.params), "attrs": attrs}
        if m.name in any_inputs:
            models[m.name]["any_inputs"] = True
    return {"api_version": "3.0", "type": "time-based", "models": models}


def check_unknown(what, unknown, allowed):
    """ConfigError for keyword arguments of init() / create() that are not documented ones."""
    if unknown:
        raise ConfigError(f"{what}: unknown parameter(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _number(value):
    """float(value) or None if it is not a real number (None, str, bool, list)."""
    if isinstance(value, (bool, str, bytes)) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class InputReader:
    """Reads the inputs of one model's entities (``eids``, in order) of a step, checked.

    ``set_range(attr, lo, hi, why)`` gives per-entity bounds ((N,) or scalars, mosaik units);
    ``read(time, inputs)`` returns {attr: (N,) float array}; ``clipped`` (N,) counts the values
    clipped at the last read (``on_invalid='clip'``).
    """

    def __init__(self, sim_name, table, eids, on_invalid="raise"):
        self.sim, self.table, self.eids = sim_name, table, list(eids)
        self.on_invalid = check_choice("on_invalid", on_invalid, ON_INVALID)
        n = len(self.eids)
        self.ranges = {a.name: (np.full(n, -np.inf), np.full(n, np.inf), a.allowed) for a in table.inputs}
        self.clipped = np.zeros(n, dtype=np.int64)

    def set_range(self, attr, lo, hi, why=""):
        n = len(self.eids)
        self.ranges[attr] = (np.broadcast_to(np.asarray(lo, float), (n,)).copy(),
                             np.broadcast_to(np.asarray(hi, float), (n,)).copy(), why or self.ranges[attr][2])

    def read(self, time, inputs):
        self.clipped[:] = 0
        return {a.name: self._attr(time, inputs, a) for a in self.table.inputs}

    def _attr(self, time, inputs, attr):
        raw = [inputs.get(eid, _EMPTY).get(attr.name) for eid in self.eids]
        if all(type(s) is dict and len(s) == 1 for s in raw):  # the usual case: one source each
            flat = [v for s in raw for v in s.values()]
            out = np.array(flat, dtype=float) if all(type(v) in _REAL for v in flat) else None
        else:
            out = None
        if out is None or (not attr.nan_ok and np.isnan(out).any()):
            out = self._one_by_one(time, raw, attr)
        lo, hi, why = self.ranges[attr.name]
        bad = (out < lo - REL_TOL * np.abs(lo)) | (out > hi + REL_TOL * np.abs(hi))
        for i in np.flatnonzero(bad):
            out[i] = self._bad(time, self.eids[i], i, attr, None, out[i], lo[i], hi[i], why,
                               min(max(out[i], lo[i]), hi[i]))
        return out

    def _one_by_one(self, time, raw, attr):
        """Values entity by entity: missing inputs, several sources, values that are not numbers."""
        lo, hi, why = self.ranges[attr.name]
        combine = COMBINE[attr.combine]
        out = np.full(len(self.eids), attr.default, dtype=float)
        for i, (eid, sources) in enumerate(zip(self.eids, raw)):
            if not sources:
                if attr.required:
                    raise InputError(f"{self.sim} entity {eid!r}: input {attr.name!r} received nothing at time "
                                     f"{time}; connect it ({attr.doc})")
                continue
            values = []
            for src, value in sources.items():
                x = _number(value)
                if x is None or (math.isnan(x) and not attr.nan_ok):
                    x = self._bad(time, eid, i, attr, src, value, lo[i], hi[i], why,
                                  attr.default if not math.isnan(attr.default) else max(lo[i], min(0.0, hi[i])))
                values.append(x)
            out[i] = combine(values)
        return out

    def _bad(self, time, eid, i, attr, src, value, lo, hi, why, fix):
        value = float(value) if isinstance(value, np.floating) else value
        where = f" from {src}" if src else ""
        text = (f"{self.sim} entity {eid!r}: input {attr.name!r}{where} = {value!r} at time {time} is outside the "
                f"allowed range [{lo:.6g}, {hi:.6g}]" + (f" ({why})" if why else ""))
        if _number(value) is None or math.isnan(_number(value)):
            text += "; it must be a number" + ("" if attr.nan_ok else " (NaN is not allowed)")
        if self.on_invalid == "raise":
            raise InputError(text + "; is a unit mixed up (kW given as MW)?")
        LOG.warning("%s; clipped to %.6g", text, fix)
        self.clipped[i] += 1
        return fix


def render_reference(sims):
    """Markdown reference of the adapters: one section per simulator with its models' tables."""
    def cell(text):
        return str(text).replace("|", "\\|")

    lines = []
    for sim in sims:
        lines += [f"### {sim.name} — `python -m {sim.module} HOST:PORT`", "", sim.doc, "",
                  f"Time: {sim.time}", "", "| init parameter | meaning |", "|---|---|"]
        lines += [f"| `{k}` | {cell(v)} |" for k, v in sim.init.items()]
        for m in sim.models:
            lines += ["", f"**{m.name}**: {m.doc}", ""]
            if m.params:
                lines += ["| create parameter | meaning |", "|---|---|"]
                lines += [f"| `{k}` | {cell(v)} |" for k, v in m.params.items()] + [""]
            lines += ["| attribute | in/out | meaning |", "|---|---|---|"]
            for a in m.inputs:
                how = ("required" if a.required else f"optional, default {_fmt(a.default)}") + (
                    ", time-shifted" if a.shifted else "")
                allowed = f"; allowed: {a.allowed}" if a.allowed else ""
                lines.append(f"| `{a.name}` | in ({how}) | {cell(a.doc + allowed)} |")
            lines += [f"| `{a.name}` | out | {cell(a.doc)} |" for a in m.outputs]
        lines.append("")
    return "\n".join(lines)


def _fmt(x):
    return "none" if isinstance(x, float) and math.isnan(x) else f"{x:g}"

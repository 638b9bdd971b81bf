"""Prosumer specifications: which devices a prosumer owns, their limits, and its preferences.

A spec file is JSON: ``{"prosumers": [{...}, ...]}``; each entry maps onto ProsumerSpec.
Every field is validated on load, so a bad file fails before any simulation starts with a
message naming the prosumer, the field, the value and the allowed range.
Powers in kW, energies in kWh, prices in EUR/kWh, generator cost coefficients per hour.
"""

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from simulators.units import STEPS_PER_DAY
from simulators.validation import ConfigError, check_range


@dataclass(frozen=True)
class PVSpec:
    """Rooftop PV (RDG) with an inverter that can curtail and provide reactive power."""

    kwp: float
    """peak power [kW]; the normalized profile (peak 1) is multiplied by this"""
    inverter_kva: float = 0.0
    """apparent-power rating [kVA]; 0 means 1.1 x kwp"""

    def validate(self, where):
        check_range(f"{where}.kwp", self.kwp, 0.0, 1e5)
        check_range(f"{where}.inverter_kva", self.inverter_kva, 0.0, 1e5)

    @property
    def s_kva(self):
        return self.inverter_kva if self.inverter_kva > 0 else 1.1 * self.kwp


@dataclass(frozen=True)
class BatterySpec:
    """Battery (BESS); power > 0 charges (consumption from the bus's point of view)."""

    capacity_kwh: float
    p_max_kw: float
    """charge and discharge limit [kW]"""
    eta_charge: float = 0.95
    eta_discharge: float = 0.95
    soc_min: float = 0.1
    """lower SoC bound as a fraction of capacity"""
    soc_max: float = 0.9
    """upper SoC bound as a fraction of capacity"""
    soc_init: float = 0.5
    """SoC at the start of each day, fraction of capacity"""
    cost_eur_per_kwh: float = 0.0
    """degradation cost per kWh of throughput (charge + discharge)"""

    def validate(self, where):
        check_range(f"{where}.capacity_kwh", self.capacity_kwh, 0.0, 1e6, lo_open=True)
        check_range(f"{where}.p_max_kw", self.p_max_kw, 0.0, 1e5, lo_open=True)
        check_range(f"{where}.eta_charge", self.eta_charge, 0.0, 1.0, lo_open=True)
        check_range(f"{where}.eta_discharge", self.eta_discharge, 0.0, 1.0, lo_open=True)
        check_range(f"{where}.soc_min", self.soc_min, 0.0, 1.0)
        check_range(f"{where}.soc_max", self.soc_max, self.soc_min, 1.0)
        check_range(f"{where}.soc_init", self.soc_init, self.soc_min, self.soc_max)
        check_range(f"{where}.cost_eur_per_kwh", self.cost_eur_per_kwh, 0.0, 10.0)


@dataclass(frozen=True)
class GeneratorSpec:
    """Controllable distributed generator (CDG) with ramp limits and quadratic cost."""

    p_max_kw: float
    p_min_kw: float = 0.0
    ramp_kw_per_step: float = 0.0
    """largest change of output between consecutive 15-minute steps; 0 means unlimited"""
    cost_a_eur_per_kw2h: float = 0.0002
    """quadratic cost coefficient: cost per hour = a p^2 + b p + c (p in kW)"""
    cost_b_eur_per_kwh: float = 0.12
    cost_c_eur_per_h: float = 0.0
    """no-load cost per hour, charged whenever the output is above zero"""

    def validate(self, where):
        check_range(f"{where}.p_max_kw", self.p_max_kw, 0.0, 1e5, lo_open=True)
        check_range(f"{where}.p_min_kw", self.p_min_kw, 0.0, self.p_max_kw)
        check_range(f"{where}.ramp_kw_per_step", self.ramp_kw_per_step, 0.0, 1e5)
        check_range(f"{where}.cost_a_eur_per_kw2h", self.cost_a_eur_per_kw2h, 0.0, 10.0)
        check_range(f"{where}.cost_b_eur_per_kwh", self.cost_b_eur_per_kwh, 0.0, 10.0)
        check_range(f"{where}.cost_c_eur_per_h", self.cost_c_eur_per_h, 0.0, 1e4)


@dataclass(frozen=True)
class ControllableLoadSpec:
    """Shiftable load (CL): a daily energy need served at any power in [0, p_max_kw]."""

    energy_kwh: float
    """energy to serve each day between earliest_step and deadline_step"""
    p_max_kw: float
    earliest_step: int = 0
    """first 15-minute step (0..95) at which the load may run"""
    deadline_step: int = STEPS_PER_DAY
    """the energy must be served before this step (1..96)"""
    unserved_penalty_eur_per_kwh: float = 0.5
    """cost of energy still unserved at the deadline"""

    def validate(self, where):
        check_range(f"{where}.p_max_kw", self.p_max_kw, 0.0, 1e5, lo_open=True)
        check_range(f"{where}.earliest_step", self.earliest_step, 0, STEPS_PER_DAY - 1)
        check_range(f"{where}.deadline_step", self.deadline_step, self.earliest_step + 1, STEPS_PER_DAY)
        window_h = (self.deadline_step - self.earliest_step) * 0.25
        check_range(f"{where}.energy_kwh", self.energy_kwh, 0.0, self.p_max_kw * window_h)
        check_range(f"{where}.unserved_penalty_eur_per_kwh", self.unserved_penalty_eur_per_kwh, 0.0, 100.0)


@dataclass(frozen=True)
class ProsumerSpec:
    """One prosumer: its bus, its household load scaling, its devices and its preferences."""

    name: str
    bus: int
    """index of the grid bus (pandapower bus index) the prosumer's meter is connected to"""
    load_peak_kw: float
    """peak of the household load profile after scaling [kW]"""
    load_pf: float = 0.95
    """power factor of the household load (lagging); sets Q when the profile has none"""
    pv: tuple = ()
    batteries: tuple = ()
    generators: tuple = ()
    controllable_loads: tuple = ()
    preferences: tuple = ()
    """plain-language preferences, turned into soft constraints by the expert layer"""

    def validate(self, where=None):
        where = where or f"prosumer {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"{where}.name: {self.name!r} must be a non-empty string")
        check_range(f"{where}.bus", self.bus, 0, 1e9)
        check_range(f"{where}.load_peak_kw", self.load_peak_kw, 0.0, 1e5)
        check_range(f"{where}.load_pf", self.load_pf, 0.5, 1.0)
        for attr in ("pv", "batteries", "generators", "controllable_loads"):
            for i, dev in enumerate(getattr(self, attr)):
                dev.validate(f"{where}.{attr}[{i}]")
        return self

    def to_dict(self):
        return asdict(self)


_DEVICE_TYPES = {
    "pv": PVSpec,
    "batteries": BatterySpec,
    "generators": GeneratorSpec,
    "controllable_loads": ControllableLoadSpec,
}


def _build(cls, raw, where):
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object with fields {[f.name for f in fields(cls)]}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(known)}")
    try:
        return cls(**raw)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def spec_from_dict(raw, index=0):
    """Build and validate one ProsumerSpec from a JSON-like dict."""
    where = f"prosumers[{index}]"
    if isinstance(raw, dict) and "name" in raw:
        where = f"prosumers[{index}] ({raw['name']!r})"
    raw = dict(raw)
    for key, cls in _DEVICE_TYPES.items():
        items = raw.get(key, [])
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{where}.{key}: expected a list of devices")
        raw[key] = tuple(_build(cls, d, f"{where}.{key}[{i}]") for i, d in enumerate(items))
    raw["preferences"] = tuple(raw.get("preferences", ()))
    return _build(ProsumerSpec, raw, where).validate(where)


def load_specs(path):
    """Read a spec file and return the validated list of ProsumerSpec (names must be unique)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"spec file {path}: {exc}") from None
    entries = data.get("prosumers") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"spec file {path}: expected {{'prosumers': [...]}} with at least one entry")
    specs = [spec_from_dict(raw, i) for i, raw in enumerate(entries)]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"spec file {path}: prosumer names must be unique, repeated: {dupes}")
    return specs


def save_specs(specs, path):
    Path(path).write_text(json.dumps({"prosumers": [s.to_dict() for s in specs]}, indent=1))

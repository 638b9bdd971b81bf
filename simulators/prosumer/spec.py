"""Prosumer specifications: which devices a prosumer owns, their limits, and its preferences.

A spec file is JSON: ``{"prosumers": [{...}, ...]}``; each entry maps onto ProsumerSpec.
Every field is validated on load, so a bad file fails before any simulation starts with a
message naming the prosumer, the field, the value and the allowed range.
Powers in kW, energies in kWh, prices in EUR/kWh, generator cost coefficients per hour.
"""

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from simulators.prosumer.devices import DEVICES, BatterySpec, ControllableLoadSpec, GeneratorSpec, PVSpec
from simulators.validation import ConfigError, check_range

__all__ = ["BatterySpec", "ControllableLoadSpec", "GeneratorSpec", "PVSpec", "ProsumerSpec", "load_specs",
           "save_specs", "spec_from_dict", "specs_from_list"]


@dataclass(frozen=True, init=False)
class ProsumerSpec:
    """One prosumer: its bus, its household load scaling, its devices and its preferences.

    Devices are lists of unit specs keyed by device type (simulators/prosumer/devices.py):
    ``ProsumerSpec(name, bus, load_peak_kw, pv=[PVSpec(...)], batteries=[...])``, read back as
    ``spec.batteries``; a registered type the prosumer lacks reads as ``()``.
    """

    name: str
    bus: int
    """index of the grid bus (pandapower bus index) the prosumer's meter is connected to"""
    load_peak_kw: float
    """yearly peak of the household load profile after scaling [kW]; each prosumer's profile is
    further scaled by a seeded factor in 0.9..1.1 (simulators/profiles/data.py)"""
    load_pf: float = 0.95
    """power factor of the household load (lagging); sets Q when the profile has none"""
    preferences: tuple = ()
    """plain-language preferences, turned into soft constraints by the expert layer"""
    devices: tuple = ()
    """((device key, (unit spec, ...)), ...) in registry order, types without units left out"""

    def __init__(self, name, bus, load_peak_kw, load_pf=0.95, preferences=(), devices=(), **units):
        unknown = sorted(set(units) - set(DEVICES))
        if unknown:
            raise ConfigError(f"prosumer {name!r}: unknown device type(s) {unknown}; registered: {list(DEVICES)}")
        merged = {**dict(devices), **units}
        for attr, value in (("name", name), ("bus", bus), ("load_peak_kw", load_peak_kw), ("load_pf", load_pf),
                            ("preferences", tuple(preferences))):
            object.__setattr__(self, attr, value)
        object.__setattr__(self, "devices", tuple((k, tuple(merged[k])) for k in DEVICES if merged.get(k)))

    def __getattr__(self, name):
        if name in DEVICES:  # a device list: () when the prosumer has no unit of this type
            return dict(self.__dict__.get("devices", ())).get(name, ())
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def validate(self, where=None):
        where = where or f"prosumer {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"{where}.name: {self.name!r} must be a non-empty string")
        check_range(f"{where}.bus", self.bus, 0, 1e9)
        check_range(f"{where}.load_peak_kw", self.load_peak_kw, 0.0, 1e5)
        check_range(f"{where}.load_pf", self.load_pf, 0.5, 1.0)
        for attr, units in self.devices:
            for i, dev in enumerate(units):
                dev.validate(f"{where}.{attr}[{i}]")
        return self

    def to_dict(self):
        out = {"name": self.name, "bus": self.bus, "load_peak_kw": self.load_peak_kw, "load_pf": self.load_pf}
        out.update({key: [asdict(u) for u in getattr(self, key)] for key in DEVICES})
        out["preferences"] = list(self.preferences)
        return out


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
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object with name, bus, load_peak_kw and device lists, got {raw!r}")
    raw = dict(raw)
    if not isinstance(raw.get("preferences", ()), (list, tuple)):
        raise ConfigError(f"{where}.preferences: expected a list of strings")
    raw["preferences"] = tuple(raw.get("preferences", ()))
    unknown = sorted(set(raw) - {"name", "bus", "load_peak_kw", "load_pf", "preferences"} - set(DEVICES))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed: name, bus, load_peak_kw, load_pf, "
                          f"preferences and the device lists {list(DEVICES)}")
    for key, device in DEVICES.items():
        items = raw.get(key, [])
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{where}.{key}: expected a list of devices")
        raw[key] = tuple(_build(device.spec, d, f"{where}.{key}[{i}]") for i, d in enumerate(items))
    for key in ("name", "bus", "load_peak_kw"):
        if key not in raw:
            raise ConfigError(f"{where}.{key}: missing (every prosumer needs name, bus and load_peak_kw)")
    return ProsumerSpec(**raw).validate(where)


def load_specs(path):
    """Read a spec file and return the validated list of ProsumerSpec (names must be unique)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"spec file {path}: {exc}") from None
    entries = data.get("prosumers") if isinstance(data, dict) else None
    return specs_from_list(entries, f"spec file {path}")


def specs_from_list(entries, where):
    """Validated ProsumerSpecs of a list of spec dicts (at least one; names must be unique)."""
    if not isinstance(entries, (list, tuple)) or not entries:
        raise ConfigError(f"{where}: expected {{'prosumers': [...]}} with at least one entry")
    specs = [spec_from_dict(raw, i) for i, raw in enumerate(entries)]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{where}: prosumer names must be unique, repeated: {dupes}")
    return specs


def save_specs(specs, path):
    Path(path).write_text(json.dumps({"prosumers": [s.to_dict() for s in specs]}, indent=1))

"""Device types of a prosumer: one class per type declares everything the plain layers need.

A device type (``DeviceType`` subclass, added with ``@register_device``) declares in one place:
the spec of one unit (a frozen dataclass whose ``validate(where)`` checks every field against
its allowed range), the physics of a bank of units of many prosumers (``apply``: normalized
actions -> feasible set-points, state update, cost), its observation columns (``observe``), its
action columns (``actions``, with bounds), the per-prosumer outputs of a step (``outputs``: the
StepResult field, the prosumer simulator's mosaik attribute and unit factor) and its per-unit
state (``state``, also the key of the expert contract's state dict).  ProsumerSpec, Fleet, the
observation/action layout (interface.py), the prosumer simulator's attribute table and the
recorder's columns all iterate over DEVICES.  The CVXPY block, the prompt text and the
verification limits of a type live one layer up, registered under the same ``key``
(agents/expert/blocks.py).  README "Adding a device type" walks through a heat pump.

Sign convention (simulators/units.py): a unit's power enters the meter power ``net_kw`` as
``sign * power``: ``sign = +1`` for consumers (battery charging > 0, controllable loads),
``-1`` for generators (PV, generators).  Powers in kW, energies in kWh, Δt = STEP_H.
"""

from simulators.prosumer.devices.base import (DEVICES, Action, DeviceStep, DeviceType, Output, StepInputs,
                                              register_device, safe_div)
from simulators.prosumer.devices.battery import Battery, BatterySpec
from simulators.prosumer.devices.generator import Generator, GeneratorSpec
from simulators.prosumer.devices.controllable_load import ControllableLoad, ControllableLoadSpec
from simulators.prosumer.devices.pv import PV, PVSpec
from simulators.validation import ConfigError

BUILTIN = tuple(DEVICES)
"""the device types shipped with the framework; their observation and action columns come first"""


def load_device_modules(modules):
    """Import the modules that register extra device types (for simulators started in another process)."""
    import importlib

    if isinstance(modules, str):  # "a, b" as on the command line
        modules = [m.strip() for m in modules.split(",") if m.strip()]
    for name in modules or ():
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"device_modules: {name!r} cannot be imported ({exc})") from None


def added_device_modules():
    """Modules that registered the device types beyond the built-in ones (to pass as device_modules)."""
    return sorted({DEVICES[k].__module__ for k in DEVICES if k not in BUILTIN})


def unregister_device(key):
    """Remove a device type added with register_device (built-in types stay)."""
    if key in BUILTIN:
        raise ConfigError(f"device type {key!r} is built in and cannot be removed")
    DEVICES.pop(key, None)


__all__ = ["BUILTIN", "DEVICES", "PV", "Action", "Battery", "BatterySpec", "ControllableLoad", "ControllableLoadSpec",
           "DeviceStep", "DeviceType", "Generator", "GeneratorSpec", "Output", "PVSpec", "StepInputs", "added_device_modules",
           "load_device_modules", "register_device", "safe_div", "unregister_device"]

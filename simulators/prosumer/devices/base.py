"""Base class and registry of the device types (see simulators/prosumer/devices/__init__.py)."""

from dataclasses import dataclass, fields

import numpy as np

from simulators.validation import ConfigError

DEVICES = {}
"""key -> DeviceType subclass, in registration order (the order of the layout and of spec files)"""


@dataclass(frozen=True)
class Action:
    """One action column: a normalized set-point in [low, high]."""

    name: str
    low: float
    high: float
    doc: str


@dataclass(frozen=True)
class Output:
    """One per-prosumer output of a step: StepResult field and the prosumer simulator's attribute."""

    field: str
    """StepResult field and recorder column, e.g. 'battery_kw'"""
    attr: str
    """mosaik attribute of the Prosumer model, e.g. 'P_battery[MW]'"""
    factor: float
    """mosaik value = field value x factor (1e-3 from kW to MW)"""
    doc: str


@dataclass
class DeviceStep:
    """What one device type did in a step, per prosumer (N,)."""

    p_kw: np.ndarray
    """contribution to the meter power, load convention [kW]"""
    cost_eur: np.ndarray
    """device cost of the step [EUR]"""
    outputs: dict
    """Output.field -> (N,) values"""
    q_kvar: np.ndarray = None
    """contribution to the meter reactive power, load convention [kVar]; None = 0"""


@dataclass
class StepInputs:
    """What every device type may read in a step besides its own action columns."""

    step: int
    """step of the day, 0..95"""
    load_kw: np.ndarray
    load_kvar: np.ndarray
    pv_avail_kw: np.ndarray
    tariff_buy: object
    tariff_sell: object


class DeviceType:
    """A bank of the units of one device type of N prosumers (arrays (K,) over units).

    Every field of ``spec`` becomes an array attribute of the same name; ``owner`` (K,) maps a
    unit to its prosumer.  Subclasses set the class attributes below and implement ``apply``.
    """

    key = ""
    """ProsumerSpec attribute and spec-file key of the unit list, e.g. 'batteries'"""
    tag = ""
    """unit tag of the expert contract and prompts, e.g. 'BESS' (action key P_BESS1)"""
    spec = None
    """frozen dataclass of one unit with ``validate(where)``"""
    sign = 1
    """+1 consumes (load convention), -1 generates"""
    obs = ()
    """(name, doc) observation columns, per prosumer, normalized"""
    actions = ()
    """Action columns"""
    outputs = ()
    """Output per prosumer"""
    state = ""
    """name of the per-unit state array kept between steps ('' if none)"""
    idle_action = 0.0
    """normalized action of a policy that does not know this device type"""

    def __init__(self, units, n):
        self.owner = np.array([i for i, _ in units], dtype=np.int64)
        self.n = n
        self.units = [u for _, u in units]
        for f in fields(self.spec):
            setattr(self, f.name, np.array([getattr(u, f.name) for u in self.units], dtype=float))
        self.reset()

    def __len__(self):
        return len(self.owner)

    def total(self, values):
        """Sum unit values per prosumer -> (N,)."""
        return np.bincount(self.owner, weights=values, minlength=self.n)

    def spread(self, per_prosumer):
        """Give each unit its prosumer's value -> (K,)."""
        return np.asarray(per_prosumer)[self.owner]

    def unit_max(self, values):
        """Largest unit value per prosumer (0 without units) -> (N,)."""
        out = np.zeros(self.n)
        np.maximum.at(out, self.owner, values)
        return out

    # ---- state ---------------------------------------------------------------------------------
    def initial_state(self):
        """(K,) state at the start of a run."""
        return np.zeros(len(self))

    def reset(self):
        if self.state:
            setattr(self, self.state, self.initial_state())

    def new_day(self):
        """Called before the first step of every day after the first."""

    def planning_state(self, new_day):
        """(K,) state a planner starts from at this step (``new_day``: the step opens a day)."""
        return getattr(self, self.state).copy()

    # ---- interface -----------------------------------------------------------------------------
    def rating_kw(self):
        """(N,) rating per prosumer; the largest rating of a prosumer scales its observations."""
        return self.total(self.p_max_kw)

    def observe(self, step, scale_kw, new_day):
        """name -> (N,) for every ``obs`` column."""
        return {}

    def apply(self, a, ctx):
        """Actions (N, len(actions)) already clipped to their bounds -> DeviceStep; advances the state."""
        raise NotImplementedError

    def to_actions(self, setpoints, ctx):
        """Per-prosumer set-points (dict of (N,) [kW]) -> normalized actions (N, len(actions))."""
        raise NotImplementedError


def register_device(cls):
    """Class decorator: add a device type to DEVICES (its names must not collide with another's)."""
    def names(d):
        return {d.key, d.tag, d.state, *(o[0] for o in d.obs), *(a.name for a in d.actions),
                *(o.field for o in d.outputs)} - {""}

    taken = {"load", "pv_avail", "bid_price", "load_kw", "net_kw", "net_kvar", "bid_kwh"}
    for other in DEVICES.values():
        if other.key != cls.key:
            taken |= names(other)
    clash = sorted(names(cls) & taken)
    if not cls.key or not cls.tag or cls.spec is None or clash:
        raise ConfigError(f"device type {cls.__name__}: key, tag and spec must be set and its names unique; "
                          f"already taken: {clash}")
    DEVICES[cls.key] = cls
    return cls


def safe_div(num, den):
    """num / den where den > 1e-12, else 0."""
    den = np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 1e-12)

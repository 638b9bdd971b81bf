"""The policy interface: what a prosumer observes and what it decides, as fixed-width vectors.

Every policy (rule-based, optimization expert, trained actor) maps an observation matrix
``obs`` shaped (n_prosumers, len(obs_fields())) to an action matrix shaped
(n_prosumers, len(action_fields())).  Observations are local: the prosumer's own profiles and
its persistence forecast of them, own device states, own bus voltage from the last step, last
market prices, tariffs and time.  The forecast columns are NaN where nobody supplied a forecast
(a co-simulation that does not connect the profiles' forecast outputs); trained actors refuse such
observations, the rule policy and the expert do not read them.
Powers and energies are divided by the prosumer's scale (``Fleet.scale_kw``, its largest
device or load rating) so one network can serve prosumers of very different size.

Actions are normalized set-points; the fleet turns them into device set-points and clips them
to what the devices can physically do (``Fleet.apply``).  All units of one device type within a
prosumer receive the same fraction of their own rating.

The layout comes from the device registry (simulators/prosumer/devices.py): the core columns
below, each built-in device type's columns in registry order, the feedback and forecast columns,
and the columns of device types registered later appended at the very end, so the index of an
existing column never moves when a device type is registered (trained actors, demonstrations
and the rule policy keep their meaning; a checkpoint records its columns and one trained on
another layout is refused).  OBS_FIELDS, ACTION_FIELDS, ACTION_LOW and ACTION_HIGH are the
built-in layout; ``layout()`` gives the layout of every device type registered now.
"""

import numpy as np

from simulators.prosumer.devices import BUILTIN, DEVICES, Action

HEAD = (
    ("time_sin", "sin(2π step/96)"),
    ("time_cos", "cos(2π step/96)"),
    ("step_frac", "step/96 in [0, 1)"),
    ("load", "household load now [kW / scale]"),
    ("pv_avail", "available PV power now [kW / scale] (the PV profile, 0 without PV)"),
)
FEEDBACK = (
    ("vm_dev", "own bus voltage at the last step: (Vm - 1) / 0.05, so the band is [-1, 1]"),
    ("price_buy_last", "buyers' average price at the last step [EUR/kWh]"),
    ("price_sell_last", "sellers' average price at the last step [EUR/kWh]"),
    ("tariff_buy", "grid retail tariff now [EUR/kWh]"),
    ("tariff_sell", "grid feed-in tariff now [EUR/kWh]"),
)
FORECAST = (
    ("load_fc4h", "forecast mean load over the next 4 h, cut at midnight [kW / scale] (yesterday's same hours, "
                  "simulators/profiles/data.py forecast_features)"),
    ("pv_fc4h", "forecast mean available PV power over the next 4 h, cut at midnight [kW / scale]"),
    ("load_fc_day", "forecast load energy from the next step to midnight [kWh / (24 h x scale)]"),
    ("pv_fc_day", "forecast available PV energy from the next step to midnight [kWh / (24 h x scale)]"),
)
"""local forecasts: persistence of the prosumer's own profiles (the day before), never the truth"""
FORECAST_COLUMNS = tuple(name for name, _ in FORECAST)
BID = Action("bid_price", 0.0, 1.0, "limit price = feed-in + bid_price * (retail - feed-in)")


def layout(keys=None):
    """(obs columns [(name, doc)], action columns [Action]) of the device types ``keys``
    (default: every registered one): built-in types first, later ones appended at the end."""
    types = [DEVICES[k] for k in (DEVICES if keys is None else keys)]
    builtin = [d for d in types if d.key in BUILTIN]
    added = [d for d in types if d.key not in BUILTIN]
    obs = [*HEAD, *(o for d in builtin for o in d.obs), *FEEDBACK, *FORECAST, *(o for d in added for o in d.obs)]
    actions = [*(a for d in builtin for a in d.actions), BID, *(a for d in added for a in d.actions)]
    return obs, actions


def idle_actions(n):
    """(n, A) actions in the current layout: 0 for the built-in columns, and for device types
    registered later their ``idle_action``; rule-like policies fill in the columns they know."""
    _, actions = layout()
    idle = {a.name: d.idle_action for d in DEVICES.values() if d.key not in BUILTIN for a in d.actions}
    return np.tile([idle.get(a.name, 0.0) for a in actions], (n, 1))


def obs_fields():
    """Names of the observation columns of every registered device type."""
    return tuple(name for name, _ in layout()[0])


def action_fields():
    """Names of the action columns of every registered device type."""
    return tuple(a.name for a in layout()[1])


_OBS, _ACTIONS = layout(BUILTIN)
OBS_FIELDS = tuple(name for name, _ in _OBS)
OBS = {name: i for i, name in enumerate(OBS_FIELDS)}
ACTION_FIELDS = tuple(a.name for a in _ACTIONS)
ACT = {name: i for i, name in enumerate(ACTION_FIELDS)}
ACTION_LOW = tuple(a.low for a in _ACTIONS)
ACTION_HIGH = tuple(a.high for a in _ACTIONS)

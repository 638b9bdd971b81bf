"""The policy interface: what a prosumer observes and what it decides, as fixed-width vectors.

Every policy (rule-based, optimization expert, trained actor) maps an observation matrix
``obs`` shaped (n_prosumers, len(OBS_FIELDS)) to an action matrix shaped
(n_prosumers, len(ACTION_FIELDS)).  Observations are local: the prosumer's own profiles,
own device states, own bus voltage from the last step, last market prices, tariffs and time.
Powers and energies are divided by the prosumer's scale (``Fleet.scale_kw``, its largest
device or load rating) so one network can serve prosumers of very different size.

Actions are normalized set-points; the fleet turns them into device set-points and clips them
to what the devices can physically do (``Fleet.apply``).  All units of one device type within a
prosumer receive the same fraction of their own rating.
"""

OBS_FIELDS = (
    "time_sin",          # sin(2π step/96)
    "time_cos",          # cos(2π step/96)
    "step_frac",         # step/96 in [0, 1)
    "load",              # household load now [kW / scale]
    "pv_avail",          # available PV power now [kW / scale]
    "soc",               # battery energy above the lower bound, fraction of usable capacity [0, 1]
    "battery_p_max",     # battery power rating [kW / scale]
    "battery_energy",    # usable battery capacity [kWh / (scale * 1 h)]
    "gen_last",          # generator output at the last step [kW / scale]
    "gen_p_max",         # generator rating [kW / scale]
    "gen_cost",          # generator marginal cost at half load [EUR/kWh]
    "cl_remaining",      # controllable-load energy still to serve today [kWh / (scale * 1 h)]
    "cl_p_max",          # controllable-load rating [kW / scale]
    "cl_steps_left",     # steps left before the controllable-load deadline, / 96
    "vm_dev",            # own bus voltage at the last step: (Vm - 1) / 0.05, so the band is [-1, 1]
    "price_buy_last",    # P2P buy price at the last step [EUR/kWh]
    "price_sell_last",   # P2P sell price at the last step [EUR/kWh]
    "tariff_buy",        # grid retail tariff now [EUR/kWh]
    "tariff_sell",       # grid feed-in tariff now [EUR/kWh]
)
OBS = {name: i for i, name in enumerate(OBS_FIELDS)}

ACTION_FIELDS = (
    "battery",            # [-1, 1]: fraction of battery power rating, > 0 charges
    "generator",          # [0, 1]: fraction of generator rating (below p_min means off)
    "controllable_load",  # [0, 1]: fraction of controllable-load rating
    "pv_curtail",         # [0, 1]: fraction of available PV power curtailed
    "pv_q",               # [-1, 1]: fraction of the inverter's spare reactive capability, > 0 injects
    "bid_price",          # [0, 1]: limit price = feed-in + bid_price * (retail - feed-in)
)
ACT = {name: i for i, name in enumerate(ACTION_FIELDS)}

ACTION_LOW = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
ACTION_HIGH = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)

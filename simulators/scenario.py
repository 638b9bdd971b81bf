"""ScenarioConfig: every knob of a co-simulation run, validated before anything starts, and
``prepare``, which builds what a run needs (specs, network, tariff) from it.

No mosaik here: the co-simulation (simulators/cosim.py) and the training environment
(agents/env.py) both build their scenario through ``prepare``, so they cannot drift apart.
The CLI of every scenario script is generated from this dataclass (field docstrings become
the --help text), and the whole config is saved as config.json beside the results, so a run
can be repeated exactly with ``--config results/<run>/config.json``.
"""

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from simulators.grid.networks import check_network, make_network, nominal_load_kw
from simulators.market.tariffs import Tariff, make_tariff
from simulators.paths import DATA_DIR
from simulators.prosumer.devices import load_device_modules
from simulators.prosumer.generate import choose_buses, generate_specs
from simulators.prosumer.spec import load_specs, specs_from_list
from simulators.validation import ConfigError, check_choice, check_range

GROUPINGS = ("per_prosumer", "grouped")
START_MODES = ("python", "cmd", "connect")


@dataclass
class ScenarioConfig:
    scenario: str = "ieee33_day"
    """name of the scenario; the first part of the run folder's name"""
    network: str = "ieee33"
    """feeder: a name from simulators.grid.networks.NETWORKS, or any SimBench grid as simbench:<code>
    (e.g. simbench:1-LV-semiurb4--0-sw)"""
    grid_model: str = "ac"
    """power-flow model: a name from simulators.grid.models.GRIDS (ac | ac_runpp | lindistflow)"""
    specs: str = str(DATA_DIR / "ieee33_prosumers.json")
    """prosumer spec file (JSON), or 'generate' for one seeded prosumer per load bus"""
    n_prosumers: int = 0
    """with specs 'generate': prosumers on this many load buses drawn with the seed (0 = every load bus)"""
    max_prosumers: int = 0
    """use only the first N prosumers of the spec list (0 = all); for quick runs"""
    market: str = "sdr"
    """clearing mechanism: a name from simulators.market.clearing.MARKETS (sdr | mmr | double_auction)"""
    tariff: str = "tou"
    """grid tariff preset from simulators.market.tariffs.TARIFFS (flat | tou)"""
    policy: str = "rule"
    """prosumer policy: a name from simulators.prosumer.policies.POLICIES (rule | idle | expert | actor)"""
    policy_options: dict = field(default_factory=dict)
    """policy-specific options as JSON, e.g. '{"checkpoint": "results/.../actor.pt"}'"""
    start_date: str = ""
    """first simulated day, YYYY-MM-DD (2016); empty = the default held-out test day"""
    days: int = 1
    """number of consecutive days to simulate"""
    seed: int = 0
    """seeds the profile assignment and every random choice of the run"""
    grouping: str = "per_prosumer"
    """per_prosumer: one mosaik simulator per prosumer; grouped: one simulator for all"""
    prosumer_start: str = "python"
    """how prosumer simulators start: python (in-process) | cmd (each in its own OS process) |
    connect (to simulators already running, see prosumer_hosts)"""
    prosumer_workers: int = 1
    """grouped: split the prosumers into this many simulators, each holding a block (one OS process
    or host each with prosumer_start cmd / connect)"""
    prosumer_hosts: str = ""
    """prosumer_start connect: HOST:PORT of each running prosumer simulator, comma-separated, one per
    simulator (python -m simulators.prosumer.sim HOST:PORT --remote)"""
    results_dir: str = "results"
    """parent folder of the run folder"""
    run_name: str = ""
    """run folder name; empty = <scenario>__<policy>__<seed>__<timestamp>"""
    progress: bool = True
    """show a progress bar"""
    plots: bool = True
    """write PNG plots into the run folder"""
    device_modules: str = ""
    """comma-separated modules to import first: they register extra device types (README "Adding
    a device type"); every simulator process imports them too"""
    on_invalid: str = "raise"
    """a simulator input outside its physical range: raise (stop with an error naming entity, attribute,
    value and range) | clip (clip it, log it, count it in prosumers.csv inputs_clipped)"""
    verbose: bool = False
    """show mosaik's start-up banner and log lines"""
    prosumer_specs: list = field(default=None, metadata={"cli": False})
    """the prosumer spec dicts themselves (a run's config.json saves them, so --config reruns with
    them, not with whatever the spec file holds today); None = read ``specs``"""
    tariff_values: dict = field(default=None, metadata={"cli": False})
    """the tariff itself, Tariff.to_dict() (saved in config.json like the specs); None = the preset"""

    @property
    def dates(self):
        start = dt.date.fromisoformat(self.start_date)
        return [(start + dt.timedelta(days=d)).isoformat() for d in range(self.days)]

    @property
    def steps(self):
        return 96 * self.days


def choices():
    """Field -> its allowed names, from the registries (the CLI shows them in --help)."""
    from simulators.attrs import ON_INVALID
    from simulators.grid.models import GRIDS
    from simulators.market.clearing import MARKETS
    from simulators.market.tariffs import TARIFFS
    from simulators.prosumer.policies import POLICIES

    return {"grid_model": GRIDS, "market": MARKETS, "tariff": TARIFFS, "policy": POLICIES, "grouping": GROUPINGS,
            "prosumer_start": START_MODES, "on_invalid": ON_INVALID}


def validate(cfg):
    """Check every field (and fill derived defaults) before the run; raises ConfigError."""
    from simulators.profiles.data import DEFAULT_TEST_DAY, ProfileBank

    if not isinstance(cfg.device_modules, str):
        raise ConfigError(f"device_modules: {cfg.device_modules!r} must be comma-separated module names")
    load_device_modules([m.strip() for m in cfg.device_modules.split(",") if m.strip()])
    check_network(cfg.network)
    for name, allowed in choices().items():
        if not (name == "tariff" and cfg.tariff_values is not None):  # the saved values decide
            check_choice(name, getattr(cfg, name), allowed)
    for name in ("days", "max_prosumers", "seed", "n_prosumers", "prosumer_workers"):
        if isinstance(getattr(cfg, name), bool) or not isinstance(getattr(cfg, name), int):
            raise ConfigError(f"{name}: {getattr(cfg, name)!r} must be an integer")
    if not isinstance(cfg.prosumer_hosts, str):
        raise ConfigError(f"prosumer_hosts: {cfg.prosumer_hosts!r} must be comma-separated HOST:PORT addresses")
    check_range("days", cfg.days, 1, 366)
    check_range("prosumer_workers", cfg.prosumer_workers, 1, 10000)
    if cfg.prosumer_workers > 1 and cfg.grouping != "grouped":
        raise ConfigError(f"prosumer_workers: {cfg.prosumer_workers} splits grouped prosumers into blocks; "
                          f"grouping {cfg.grouping!r} already runs one simulator per prosumer (use grouping 'grouped')")
    if (cfg.prosumer_start == "connect") != bool(cfg.prosumer_hosts):
        raise ConfigError(f"prosumer_hosts: {cfg.prosumer_hosts!r} must list HOST:PORT addresses exactly when "
                          f"prosumer_start is 'connect' (it is {cfg.prosumer_start!r})")
    for addr in prosumer_hosts(cfg):
        host, _, port = addr.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"prosumer_hosts: {addr!r} is not HOST:PORT with a port in [1, 65535]")
    check_range("max_prosumers", cfg.max_prosumers, 0, 100000)
    check_range("seed", cfg.seed, 0, 2 ** 32 - 1)
    for name in ("progress", "plots", "verbose"):
        if not isinstance(getattr(cfg, name), bool):
            raise ConfigError(f"{name}: {getattr(cfg, name)!r} must be true or false")
    check_range("n_prosumers", cfg.n_prosumers, 0, 100000)
    if cfg.n_prosumers and cfg.specs != "generate":
        raise ConfigError(f"n_prosumers: {cfg.n_prosumers} draws load buses for generated specs; with a spec "
                          f"file ({cfg.specs!r}) use max_prosumers, or give specs 'generate'")
    if not isinstance(cfg.policy_options, dict):
        raise ConfigError(f"policy_options: {cfg.policy_options!r} must be a JSON object")
    if not cfg.start_date:
        cfg = dataclasses.replace(cfg, start_date=str(DEFAULT_TEST_DAY))
    try:
        dt.date.fromisoformat(cfg.start_date)
    except (TypeError, ValueError):
        raise ConfigError(f"start_date: {cfg.start_date!r} is not a date YYYY-MM-DD") from None
    bank = ProfileBank.simbench()
    for date in cfg.dates:
        bank.day_index(date)
    if cfg.prosumer_specs is None and cfg.specs != "generate" and not Path(str(cfg.specs)).is_file():
        raise ConfigError(f"specs: file {cfg.specs!r} not found (give a JSON spec file or 'generate')")
    return cfg


def prosumer_hosts(cfg):
    """The HOST:PORT addresses of cfg.prosumer_hosts, in order."""
    return [a.strip() for a in cfg.prosumer_hosts.split(",") if a.strip()]


def prosumer_blocks(cfg, n):
    """Agent indices held by each prosumer simulator: one each (per_prosumer), or
    ``prosumer_workers`` contiguous blocks of near-equal size (grouped).  ConfigError when there
    are more workers than prosumers, or (connect) not one address per simulator."""
    if cfg.grouping == "per_prosumer":
        blocks = [[i] for i in range(n)]
    elif cfg.prosumer_workers > n:
        raise ConfigError(f"prosumer_workers: {cfg.prosumer_workers} outside the allowed range [1, {n}] "
                          f"(one block needs at least one of the {n} prosumers)")
    else:
        k, extra = divmod(n, cfg.prosumer_workers)
        starts = [w * k + min(w, extra) for w in range(cfg.prosumer_workers + 1)]
        blocks = [list(range(a, b)) for a, b in zip(starts, starts[1:])]
    hosts = prosumer_hosts(cfg)
    if cfg.prosumer_start == "connect" and len(hosts) != len(blocks):
        raise ConfigError(f"prosumer_hosts: {len(hosts)} addresses for {len(blocks)} prosumer simulators; "
                          f"give one HOST:PORT per simulator")
    return blocks


def to_dict(cfg):
    return dataclasses.asdict(cfg)


def prepare(cfg):
    """Validate the config and build what the run needs: specs, network, tariff."""
    cfg = validate(cfg)
    net = make_network(cfg.network)
    if cfg.prosumer_specs is not None:  # the specs of a saved config.json
        specs = specs_from_list(cfg.prosumer_specs, "prosumer_specs")
    elif cfg.specs == "generate":
        specs = generate_specs(choose_buses(nominal_load_kw(net), cfg.n_prosumers, cfg.seed), cfg.seed)
    else:
        specs = load_specs(cfg.specs)
    if cfg.max_prosumers:
        specs = specs[: cfg.max_prosumers]
    prosumer_blocks(cfg, len(specs))
    buses = set(int(b) for b in net.bus.index)
    for s in specs:
        if s.bus not in buses:
            raise ConfigError(f"prosumer {s.name!r}.bus: {s.bus} is not a bus of network {cfg.network!r} "
                              f"(allowed: {min(buses)}..{max(buses)})")
    tariff = make_tariff(cfg.tariff) if cfg.tariff_values is None else Tariff.from_dict(cfg.tariff_values)
    return cfg, specs, net, tariff


MVLV_RURAL = "simbench:1-MVLV-rural-all-0-sw"
"""SimBench's rural MV grid with its 90 LV grids: 5479 buses, 5373 loads on 5131 buses, 581 PV units"""

PRESETS = {
    "ieee33_day": ScenarioConfig(),
    "simbench_100": ScenarioConfig(scenario="simbench_100", network="simbench_lv_rural3", specs="generate",
                                   grouping="grouped"),
    "simbench_mvlv_1000": ScenarioConfig(scenario="simbench_mvlv_1000", network=MVLV_RURAL, specs="generate",
                                         n_prosumers=1000, grouping="grouped"),
    "simbench_mvlv_all": ScenarioConfig(scenario="simbench_mvlv_all", network=MVLV_RURAL, specs="generate",
                                        grouping="grouped"),
    "ieee33_high_pv": ScenarioConfig(scenario="ieee33_high_pv", specs=str(DATA_DIR / "ieee33_high_pv_prosumers.json")),
    "ieee141_20": ScenarioConfig(scenario="ieee141_20", network="ieee141",
                                 specs=str(DATA_DIR / "ieee141_prosumers.json"), grouping="grouped"),
}
"""the named scenarios (scenarios/<name>.py runs each; agents.marl.evaluate takes them by name)"""

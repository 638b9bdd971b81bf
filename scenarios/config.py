"""ScenarioConfig: every knob of a co-simulation run, validated before anything starts.

The CLI of every scenario script is generated from this dataclass (field docstrings become
the --help text), and the whole config is saved as config.json beside the results, so a run
can be repeated exactly with ``--config results/<run>/config.json``.
"""

import argparse
import ast
import dataclasses
import datetime as dt
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path

from simulators.validation import ConfigError, check_choice, check_range

DATA_DIR = Path(__file__).resolve().parent / "data"
GROUPINGS = ("per_prosumer", "grouped")
START_MODES = ("python", "cmd")


@dataclass
class ScenarioConfig:
    scenario: str = "ieee33_day"
    """name of the scenario; the first part of the run folder's name"""
    network: str = "ieee33"
    """feeder: a name from simulators.grid.networks.NETWORKS"""
    grid_model: str = "ac"
    """power-flow model: a name from simulators.grid.models.GRIDS (ac | ac_runpp | lindistflow)"""
    specs: str = str(DATA_DIR / "ieee33_prosumers.json")
    """prosumer spec file (JSON), or 'generate' for one seeded prosumer per load bus"""
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
    """how prosumer simulators start: python (in-process) | cmd (each in its own OS process)"""
    results_dir: str = "results"
    """parent folder of the run folder"""
    run_name: str = ""
    """run folder name; empty = <scenario>__<policy>__<seed>__<timestamp>"""
    progress: bool = True
    """show a progress bar"""
    plots: bool = True
    """write PNG plots into the run folder"""

    @property
    def dates(self):
        start = dt.date.fromisoformat(self.start_date)
        return [(start + dt.timedelta(days=d)).isoformat() for d in range(self.days)]

    @property
    def steps(self):
        return 96 * self.days


def validate(cfg):
    """Check every field (and fill derived defaults) before the run; raises ConfigError."""
    from simulators.grid.models import GRIDS
    from simulators.grid.networks import NETWORKS
    from simulators.market.clearing import MARKETS
    from simulators.market.tariffs import TARIFFS
    from simulators.prosumer.policies import POLICIES
    from simulators.profiles.data import DEFAULT_TEST_DAY, ProfileBank

    check_choice("network", cfg.network, NETWORKS)
    check_choice("grid_model", cfg.grid_model, GRIDS)
    check_choice("market", cfg.market, MARKETS)
    check_choice("tariff", cfg.tariff, TARIFFS)
    check_choice("policy", cfg.policy, POLICIES)
    check_choice("grouping", cfg.grouping, GROUPINGS)
    check_choice("prosumer_start", cfg.prosumer_start, START_MODES)
    check_range("days", cfg.days, 1, 366)
    check_range("max_prosumers", cfg.max_prosumers, 0, 100000)
    if not isinstance(cfg.policy_options, dict):
        raise ConfigError(f"policy_options: {cfg.policy_options!r} must be a JSON object")
    if not cfg.start_date:
        cfg.start_date = str(DEFAULT_TEST_DAY)
    try:
        dt.date.fromisoformat(cfg.start_date)
    except ValueError:
        raise ConfigError(f"start_date: {cfg.start_date!r} is not a date YYYY-MM-DD") from None
    bank = ProfileBank.simbench()
    for date in cfg.dates:
        bank.day_index(date)
    if cfg.specs != "generate" and not Path(cfg.specs).is_file():
        raise ConfigError(f"specs: file {cfg.specs!r} not found (give a JSON spec file or 'generate')")
    return cfg


def field_docs(cls):
    """Attribute docstrings of a dataclass (the string right after each field)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = str(nxt.value.value)
    return docs


_FLAG_TYPES = {int: int, "int": int, float: float, "float": float, dict: json.loads, "dict": json.loads}


def add_config_flags(parser, cls, defaults=None, choices=None):
    """One --flag per field of dataclass ``cls`` (its docstring as help, ``defaults`` shown in it).

    Every flag defaults to None, so ``given_flags(args)`` holds only what the user typed and can
    override a base config (the dataclass defaults, a saved config.json, a scenario's defaults).
    """
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        flag, shown = "--" + f.name.replace("_", "-"), getattr(defaults, f.name, None) if defaults else None
        helptext = docs.get(f.name, "") + (f" (default: {shown!r})" if defaults is not None else "")
        if f.type in (bool, "bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=helptext)
        else:
            allowed = sorted((choices or {})[f.name]) if f.name in (choices or {}) else None
            parser.add_argument(flag, type=_FLAG_TYPES.get(f.type, str), default=None, choices=allowed, help=helptext)
    return parser


def given_flags(args):
    """The flags of an argparse result that were given on the command line (not None)."""
    return {k: v for k, v in vars(args).items() if v is not None}


def parse_args(defaults, argv=None, description=None):
    """Build the CLI from ScenarioConfig's fields, starting from the scenario's ``defaults``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", help="rerun from a saved config.json (other flags override it)")
    args = given_flags(add_config_flags(parser, ScenarioConfig, defaults).parse_args(argv))
    base = dataclasses.asdict(defaults)
    config_path = args.pop("config", None)
    if config_path:
        saved = json.loads(Path(config_path).read_text())
        base.update({k: v for k, v in saved.items() if k in base})
    base.update(args)
    return ScenarioConfig(**base)


def to_dict(cfg):
    return dataclasses.asdict(cfg)

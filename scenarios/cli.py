"""The shared command line of the scenario scripts: flags from ScenarioConfig, run, print a summary."""

import argparse
import dataclasses
import json
from pathlib import Path

from simulators.cli import add_config_flags, given_flags
from simulators.cosim import run
from simulators.scenario import ScenarioConfig
from simulators.validation import ConfigError


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


def main_for(defaults, argv=None, description=None, grid_builder=None):
    """Shared ``main()`` of the scenario scripts: parse flags, run, print where results are."""
    cfg = parse_args(defaults, argv, description)
    try:
        run_dir, summary = run(cfg, grid_builder)
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    keys = ("cost_eur", "voltage_violation_rate", "steps_with_violation", "vm_min_pu", "vm_max_pu",
            "losses_kwh", "p2p_volume_kwh", "self_sufficiency", "nonconverged_steps", "wall_run_s")
    print(f"results: {run_dir}")
    for k in keys:
        print(f"  {k:24s} {summary[k]}")
    return run_dir, summary

"""The shared command line of the scenario scripts: flags from ScenarioConfig, run, print a summary.

Every user error (a bad flag, a missing or corrupted --config, a bad value, a results folder that
is a file, a policy option the policy rejects) ends with one line ``error: ...`` on stderr and
exit status 2, before the run folder exists.  Ctrl-C ends a run with one line and status 130; the
rows recorded so far stay in the run folder and summary.json says ``"incomplete": true``.
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from simulators.cli import add_config_flags, given_flags
from simulators.grid.networks import NETWORKS
from simulators.cosim import builder_name, our_grid, run
from simulators.scenario import ScenarioConfig, choices
from simulators.validation import ConfigError

SAVED_EXTRAS = {"grid_builder"}
"""keys of a run's config.json besides the ScenarioConfig fields"""
SUMMARY_KEYS = ("cost_eur", "voltage_violation_rate", "steps_with_violation", "vm_min_pu", "vm_max_pu",
                "losses_kwh", "p2p_volume_kwh", "self_sufficiency", "nonconverged_steps", "wall_run_s")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


def load_config(path, builder):
    """The ScenarioConfig fields of a saved config.json, with its prosumer specs and tariff values."""
    try:
        saved = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"config: cannot read {str(path)!r} ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config: {str(path)!r} is not valid JSON ({exc})") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"config: {str(path)!r} must hold a JSON object (a run's config.json)")
    fields = {f.name for f in dataclasses.fields(ScenarioConfig)}
    unknown = sorted(set(saved) - fields - SAVED_EXTRAS)
    if unknown:
        raise ConfigError(f"config: unknown key(s) {unknown} in {str(path)!r}; allowed: the ScenarioConfig fields")
    saved_builder = saved.get("grid_builder")
    if saved_builder and saved_builder != builder_name(builder):
        raise ConfigError(f"config: {str(path)!r} was run with the grid builder {saved_builder}; rerun it with the "
                          "scenario script that uses it")
    return {k: v for k, v in saved.items() if k in fields}


def parse_args(defaults, argv=None, description=None, grid_builder=None):
    """Build the CLI from ScenarioConfig's fields, starting from the scenario's ``defaults``."""
    parser = _Parser(description=description)
    parser.add_argument("--config", help="rerun exactly from a run's config.json (its prosumer specs and tariff "
                                         "values; other flags override it)")
    args = given_flags(add_config_flags(parser, ScenarioConfig, defaults, choices(), {"network": NETWORKS}).parse_args(argv))
    base = dataclasses.asdict(defaults)
    config_path = args.pop("config", None)
    if config_path:
        base.update(load_config(config_path, grid_builder or our_grid))
    # a spec file or tariff preset typed with --config replaces the saved specs / tariff values
    base.update(args, **{saved: None for flag, saved in (("specs", "prosumer_specs"), ("tariff", "tariff_values"))
                         if flag in args})
    return ScenarioConfig(**base)


def _where(exc):
    """'; run folder: ...' when the error happened after the run folder was created."""
    notes = [n for n in getattr(exc, "__notes__", ()) if n.startswith("run folder: ")]
    return f" ({notes[0]})" if notes else ""


def main_for(defaults, argv=None, description=None, grid_builder=None):
    """Shared ``main()`` of the scenario scripts: parse flags, run, print where results are."""
    try:
        cfg = parse_args(defaults, argv, description, grid_builder)
        run_dir, summary = run(cfg, grid_builder)
    except ConfigError as exc:
        print(f"error: {exc}{_where(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt as exc:
        print(f"interrupted: the rows recorded so far are kept, summary.json is marked incomplete{_where(exc)}",
              file=sys.stderr)
        raise SystemExit(130) from None
    print(f"results: {run_dir}")
    for k in SUMMARY_KEYS:
        print(f"  {k:24s} {summary[k]}")
    return run_dir, summary

"""The device registry: the README's heat pump example, run from the README itself through the fleet,
the training environment, the reference expert and a co-simulation."""

import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulators.prosumer import devices as registry
from simulators.prosumer.interface import ACTION_FIELDS, OBS_FIELDS, action_fields, obs_fields
from simulators.validation import ConfigError

ROOT = Path(__file__).resolve().parents[1]
MODULE = "readme_heat_pump"
HP = {"p_max_kw": 3.0, "cop": 3.2, "store_kwh": 12.0, "heat_demand_kw": 1.5}


def _readme_blocks():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Adding a device type: a heat pump", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
def heat_pump():
    """Exec the README's code blocks as module ``readme_heat_pump``; unregister afterwards."""
    from agents.expert.blocks import BLOCKS

    blocks = _readme_blocks()
    assert len(blocks) == 2, "README: the plain part and the expert block"
    module = types.ModuleType(MODULE)
    sys.modules[MODULE] = module
    try:
        for code in blocks:
            exec(compile(code, f"README.md ({MODULE})", "exec"), module.__dict__)
        yield module
    finally:
        registry.unregister_device("heat_pumps")
        BLOCKS.pop("heat_pumps", None)
        sys.modules.pop(MODULE, None)


def _spec_file(tmp_path):
    from simulators.paths import DATA_DIR

    entries = json.loads((DATA_DIR / "ieee33_prosumers.json").read_text())["prosumers"][:4]
    entries[1]["heat_pumps"] = [HP]
    entries[3]["heat_pumps"] = [HP, {**HP, "p_max_kw": 2.0, "heat_demand_kw": 0.5}]
    path = tmp_path / "with_heat_pumps.json"
    path.write_text(json.dumps({"prosumers": entries}))
    return path


def test_layout_appends_new_columns_and_keeps_the_old_ones(heat_pump):
    assert obs_fields()[:len(OBS_FIELDS)] == OBS_FIELDS and obs_fields()[len(OBS_FIELDS):] == ("heat_level", "hp_p_max")
    assert action_fields() == ACTION_FIELDS + ("heat_pump",)


def test_fleet_keeps_the_heat_store_in_its_band(heat_pump, tmp_path):
    from simulators.prosumer.fleet import Fleet
    from simulators.prosumer.spec import load_specs

    specs = load_specs(_spec_file(tmp_path))
    fleet = Fleet(specs)
    hp = fleet.devices["heat_pumps"]
    rng = np.random.default_rng(0)
    for t in range(96):
        a = rng.uniform(fleet.action_low, fleet.action_high, size=(fleet.n, len(fleet.action_fields)))
        res = fleet.apply(t, a, np.full(fleet.n, 1.0), np.zeros(fleet.n), np.zeros(fleet.n), 0.3, 0.08)
        assert np.all(hp.heat_kwh >= hp.lo - 1e-9) and np.all(hp.heat_kwh <= hp.hi + 1e-9)
        assert np.all(res.hp_kw >= 0) and np.all(res.hp_kw <= hp.p_max + 1e-9)
    assert res.hp_kw[0] == 0 and res.hp_kw[[1, 3]].min() >= 0  # only prosumers 1 and 3 own heat pumps


def test_bad_heat_pump_spec_names_the_field(heat_pump):
    from simulators.prosumer.spec import spec_from_dict

    with pytest.raises(ConfigError, match=r"heat_pumps\[0\]\.heat_demand_kw"):
        spec_from_dict({"name": "x", "bus": 1, "load_peak_kw": 3, "heat_pumps": [{**HP, "heat_demand_kw": 50}]})


def test_environment_and_reference_expert(heat_pump, tmp_path):
    from agents.env import EnvConfig, P2PEnv
    from agents.expert.reference import build_reference, make_state

    env = P2PEnv(EnvConfig(specs=str(_spec_file(tmp_path)), days="2016-01-16"))
    obs = env.reset_batch()
    assert obs.shape == (4, len(OBS_FIELDS) + 2) and env.act_dim == len(ACTION_FIELDS) + 1
    actions = np.tile([0, 0, 0, 0, 0, 0.5, 1.0], (4, 1))  # heat pumps at full power
    _, _, _, info = env.step_batch(actions)
    assert info["step"].hp_kw[1] > 0

    spec = env.specs[3]
    day = env.profiles
    tariff = env.tariff
    state = make_state(spec, 40, day.load_kw[:96, 3], day.pv_avail_kw[:96, 3], tariff.buy_eur_per_kwh,
                       tariff.sell_eur_per_kwh)
    assert state["heat_kwh"] == [0.5 * 12.0, 0.5 * 12.0]
    out = build_reference(spec).solve(state)
    assert out["status"] == "optimal"
    for i, unit in enumerate(spec.heat_pumps, 1):
        p = out["actions"][f"P_HP{i}"]
        heat = state["heat_kwh"][i - 1] + np.cumsum((unit.cop * p - unit.heat_demand_kw) * 0.25)
        assert p.min() >= -1e-6 and p.max() <= unit.p_max_kw + 1e-6
        assert heat.min() >= unit.store_min * unit.store_kwh - 1e-4 and heat.max() <= unit.store_kwh + 1e-4


def test_prompt_and_verification_know_the_heat_pump(heat_pump, tmp_path):
    from agents.expert.reference import make_state
    from agents.llm.prompts import basic_model_text, edit_model_text
    from agents.llm.verification import check_limits
    from simulators.prosumer.spec import load_specs

    assert "[HP1] P_HP1[t] >= 0" in basic_model_text()
    spec = load_specs(_spec_file(tmp_path))[3]
    assert "[HP2]" in edit_model_text(spec)
    state = make_state(spec, 90, np.ones(96), np.zeros(96), np.full(96, 0.3), np.full(96, 0.1))
    rec = {"actions": {"P_CL1": [0.0] * 6, "P_HP1": [9.0] * 6, "P_HP2": [0.0] * 6,
                       **{k: [0.0] * 6 for k in ("P_RDG1", "P_BESS1", "P_CDG1")}}, "p_ex": [-1.0] * 6}
    reasons = check_limits(spec, state, rec)
    assert any(r.startswith("P_HP1") for r in reasons) and any(r.startswith("HP1: stored heat") for r in reasons)


def test_cosimulation_records_the_heat_pump(heat_pump, tmp_path):
    from simulators.cosim import run
    from simulators.scenario import ScenarioConfig

    cfg = ScenarioConfig(specs=str(_spec_file(tmp_path)), grouping="grouped", results_dir=str(tmp_path),
                         run_name="hp", progress=False, plots=False, device_modules=MODULE)
    run_dir, summary = run(cfg)
    pros = pd.read_csv(run_dir / "prosumers.csv")
    assert {"hp_kw", "heat_kwh"} <= set(pros.columns) and len(pros) == 96 * 4 and not summary["incomplete"]
    owners = pros[pros["prosumer"] == json.loads((run_dir / "config.json").read_text())["prosumer_specs"][1]["name"]]
    assert owners["hp_kw"].sum() > 0 and owners["heat_kwh"].min() >= 0.2 * 12.0 - 1e-6

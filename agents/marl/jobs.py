"""The unit jobs of an evaluation (agents.marl.evaluate): one co-simulated day, one day in the training
environment, one perfect-foresight bound, and the checks that let an interrupted evaluation resume."""

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

METRICS = ("cost_eur", "voltage_violation_rate", "controllable_rate", "losses_kwh", "p2p_volume_kwh")
"""what runs.csv keeps of a day"""


def env_config(base):
    from agents.env import EnvConfig

    return EnvConfig(network=base.network, grid_model=base.grid_model, specs=base.specs,
                     max_prosumers=base.max_prosumers, market=base.market, tariff=base.tariff, seed=base.seed)


def training_finished(run_dir, total_steps):
    """Whether ``run_dir`` holds a finished training run (its last checkpoint at total_steps, or stopped early)."""
    checkpoint = Path(run_dir) / "checkpoint.pt"
    if not checkpoint.is_file():
        return False
    import torch

    loop = torch.load(checkpoint, weights_only=True)["loop"]
    return bool(loop.get("finished")) or loop["step"] >= total_steps


def cosim_finished(run_dir):
    """Whether ``run_dir`` holds a finished co-simulation run: summary.json not marked incomplete."""
    summary = Path(run_dir) / "summary.json"
    return summary.is_file() and json.loads(summary.read_text()).get("incomplete") is False


def set_aside(run_dir):
    """Rename an unfinished run folder to <name>.interrupted-<time> (kept, out of the way)."""
    run_dir = Path(run_dir)
    if run_dir.exists():
        run_dir.rename(run_dir.with_name(f"{run_dir.name}.interrupted-{time.strftime('%Y%m%d-%H%M%S')}"))


def wall_from_progress(path):
    """Wall time [s] of a finished training run (pretraining and evaluations included): the last wall_s."""
    if not Path(path).is_file():
        return float("nan")
    last = pd.read_csv(path).iloc[-1]
    return float(last["wall_s"]) if "wall_s" in last and pd.notna(last["wall_s"]) else float("nan")


def cosim_one(base, policy, options, day, out, name):
    """One day of the co-simulation into out/cosim/<name> (a finished one is read back, not rerun)."""
    from simulators.cosim import run

    run_dir = out / "cosim" / name
    if cosim_finished(run_dir):
        summary = json.loads((run_dir / "summary.json").read_text())
    else:
        set_aside(run_dir)
        cfg = dataclasses.replace(base, policy=policy, policy_options=options, start_date=day, days=1,
                                  results_dir=str(out / "cosim"), run_name=name)
        run_dir, summary = run(cfg)
    return {"run_dir": str(run_dir), "controllable_rate": 1.0 - summary["steps_with_violation_share"],
            **{k: summary[k] for k in METRICS if k in summary}}


def env_day(env, actor, day):
    """An actor's deterministic day in the training environment: cost [EUR], violation and controllable rates."""
    import torch

    from simulators.units import V_MAX_PU, V_MIN_PU

    obs, done, cost, outside, steps_ok, steps = env.reset_batch(day=day), False, 0.0, [], 0, 0
    while not done:
        with torch.no_grad():
            action = actor.mean_action(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)).squeeze(0).numpy()
        obs, _, done, info = env.step_batch(action.astype(float))
        cost += float(np.sum(info["cost_eur"]))
        vm = np.asarray(info["power_flow"].vm_pu, float)
        if np.isfinite(vm).all():  # as the co-simulation's summary: non-converged steps left out
            out = (vm < V_MIN_PU) | (vm > V_MAX_PU)
            outside.append(out.mean())
            steps_ok += not out.any()
            steps += 1
    return {"cost_eur": cost, "voltage_violation_rate": float(np.mean(outside)) if outside else np.nan,
            "controllable_rate": steps_ok / steps if steps else np.nan}


def bound_one(base, day):
    """Perfect-foresight cost [EUR] of the whole community on ``day``, network limits and preferences ignored,
    so that no policy can beat it on cost."""
    from agents.env import make_scenario
    from agents.expert.joint import JointExpert, perfect_foresight
    from simulators.profiles.data import ProfileBank, assign_profiles, prosumer_days

    specs, net, tariff = make_scenario(env_config(base))
    bank = ProfileBank.simbench()
    profiles = prosumer_days(bank, specs, assign_profiles(specs, base.seed, bank), day)
    unconstrained = [dataclasses.replace(s, preferences=()) for s in specs]
    expert = JointExpert(unconstrained, tariff, net, voltage_penalty_eur_per_pu=0.0)
    return perfect_foresight(expert, profiles, market=base.market)["cost_eur"]

"""The unit jobs of an evaluation (agents.marl.evaluate): the demonstrations, one co-simulated day,
one day in the training environment, one perfect-foresight bound, the test curve, and the checks
that let an interrupted evaluation resume."""

import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from simulators.validation import ConfigError

METRICS = ("cost_eur", "voltage_violation_rate", "controllable_rate", "losses_kwh", "p2p_volume_kwh")
"""what runs.csv keeps of a day"""


def env_config(base):
    from agents.env import EnvConfig

    return EnvConfig(network=base.network, grid_model=base.grid_model, specs=base.specs,
                     max_prosumers=base.max_prosumers, market=base.market, tariff=base.tariff, seed=base.seed)


def exit_with_parent(parent_pid, poll_s=1.0):
    """Initializer of an evaluation's pool workers: a daemon thread ends the worker once the process that
    started it is gone.  A killed evaluation (SIGTERM, SIGKILL: no clean-up runs) otherwise leaves its
    workers training on into the run folder, where a rerun of the same name would meet their files."""
    import os
    import threading

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


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


def write_demos(cfg, base, out):
    """out/demos_p<p>.npz: the expert on ``demo_days`` training days drawn with the profile seed p (a copy
    of cfg.demo_dir's file when that holds the very same demonstrations)."""
    from agents.expert.policy import write_demonstrations
    from simulators.profiles.data import ProfileBank, train_days

    path = out / f"demos_p{base.seed}.npz"
    if path.is_file():  # resumed evaluation: written in full before (the write is atomic)
        return path
    days = train_days(ProfileBank.simbench())
    pick = np.random.default_rng(base.seed).choice(len(days), cfg.demo_days, replace=False)
    dates = [str(days[i].date()) for i in sorted(pick)]
    if cfg.demo_dir:
        shutil.copyfile(_matching_demos(cfg, base, dates), path)
        return path
    if cfg.demo_experts:
        _write_generated_demos(cfg, base, out, path, dates)
        return path
    write_demonstrations(path, dates, env_config(base), cfg.demo_options)
    return path


def _write_generated_demos(cfg, base, out, path, dates):
    """demos_p<p>.npz from the coupled experts of cfg.demo_experts, and demo_sources_p<p>.json: per
    day, which prosumers' generated experts planned and which fell back to the reference."""
    from agents.llm.coupled import accepted_codes, write_generated_demonstrations
    from simulators.scenario import prepare

    specs = prepare(base)[1]
    # the control 'reference': every prosumer's reference model written as code, through the same worker
    codes = {} if cfg.demo_experts == "reference" else accepted_codes(cfg.demo_experts, specs)
    meta = write_generated_demonstrations(path, dates, codes, env_config(base))
    sources = {"demo_experts": cfg.demo_experts, "prosumers": [s.name for s in specs],
               "days": {e["date"]: e["expert_sources"] for e in meta["episodes"]}}
    (out / f"demo_sources_p{base.seed}.json").write_text(json.dumps(sources, indent=1, default=str))


def _matching_demos(cfg, base, dates):
    """cfg.demo_dir's demos_p<p>.npz, checked to hold the expert, scenario and days this evaluation would write."""
    from agents.env import EnvConfig
    from agents.expert.policy import DEFAULT_OPTIONS, load_demonstrations

    path = Path(cfg.demo_dir) / f"demos_p{base.seed}.npz"
    if not path.is_file():
        raise ConfigError(f"demo_dir: {str(path)!r} not found")

    _, meta = load_demonstrations(path)
    meta["env_config"] = dataclasses.asdict(EnvConfig(**meta["env_config"]))  # fields added since take their defaults
    want = {"env_config": dataclasses.asdict(env_config(base)), "options": {**DEFAULT_OPTIONS, **cfg.demo_options},
            "dates": dates}
    differ = sorted(k for k, v in want.items() if json.loads(json.dumps(v)) != meta.get(k))
    if differ:
        raise ConfigError(f"demo_dir: {str(path)!r} differs from this evaluation's demonstrations in {differ}")
    return path


def test_curve(bases, runs, days):
    """Cost [EUR/day] on ``days`` of every snapshot of every run, after all training (informs no choice)."""
    from agents.env import P2PEnv
    from agents.marl.policy import load_actor

    rows = []
    for pseed, base in bases.items():
        env = P2PEnv(env_config(base))
        for (algo, p, seed), run_dir in runs.items():
            for snap in sorted((run_dir / "snapshots").glob("actor_*.pt")) if p == pseed else ():
                actor = load_actor(snap)
                cost = np.mean([env_day(env, actor, d)["cost_eur"] for d in days])
                rows.append({"method": algo, "pseed": p, "seed": seed, "step": int(snap.stem.split("_")[1]),
                             "cost_eur": cost})
    return pd.DataFrame(rows, columns=["method", "pseed", "seed", "step", "cost_eur"])


test_curve.__test__ = False  # a name starting with "test": keep pytest from collecting it where imported

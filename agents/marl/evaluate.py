"""Train every method over several seeds and evaluate all of them through the mosaik co-simulation.

    python -m agents.marl.evaluate                     # default scenario, 6 algorithms x 3 seeds, 4000 steps each
    python -m agents.marl.evaluate --scenario simbench_100 --seeds 0,1 --total-steps 2000 --demo-days 2 \
        --test-days 3 --train-options '{"*": {"update_every": 4}}'          # 118 prosumers
    python -m agents.marl.evaluate --train-dir results/<earlier eval>/train   # re-evaluate trained actors
    python -m agents.marl.evaluate --run-name <name> --resume          # finish an interrupted evaluation

Training options per algorithm are TRAIN_OPTIONS below (the proposed method's recipe, and the
actor selection every method shares), overridable with --train-options.

One folder results/<scenario>__marl-eval__<seeds>__<timestamp>/ holds:
- demos.npz: the optimization expert's demonstrations on ``demo_days`` training days (what the
  imitating algorithms imitate; agents/expert/policy.py:write_demonstrations);
- train/<algo>__s<seed>/: each training run (config, progress.csv, actor.pt = the actor kept by
  its best validation return on training-split days, best.json, actor_last.pt);
- cosim/<method>__s<seed>__<day>/: each evaluation run, a complete co-simulation run folder;
- runs.csv: one row per method, seed and held-out test day; table.csv / table.md: per method the
  mean and standard deviation over seeds of the cost summed over the test days, its gap to the
  perfect-foresight bound, the voltage violation rate, losses, P2P volume and training wall time;
- training.csv: wall time of every training run;
- learning_curves.png, voltage_envelopes.png (one panel per test day), config.json (the settings
  and every algorithm's effective training options; ``load_config(folder)`` reads it back).
An interrupted evaluation is finished with ``--resume`` and the same settings: finished
demonstrations, training runs and co-simulation days are kept, unfinished ones set aside and redone.

The gap is (cost − bound) / |bound| of the sums over the test days: cost / bound − 1 whenever the
bound is positive, and still "0 = optimal, larger = worse" on sunny days when the community earns
money (bound < 0), where cost / bound − 1 would flip its sign.

Trained actors run in the prosumer simulators (policy "actor") exactly like the rule policy and
the optimization expert (policy "expert"); those two are deterministic, so they are run once and
their spread is 0.  The bound is the perfect-foresight economic optimum of the joint expert's model per day
(agents/expert/joint.py, voltage limits left out), which no policy can beat on cost; it is not
run through the power flow, so its voltage columns are empty.
Every method sees the same scenario: the profile assignment uses ``scenario_seed``; training seeds
only change network initialization, exploration and replay.
"""

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from agents.marl.algorithms import ALGORITHMS
from simulators.recorder.recorder import new_run_dir
from simulators.validation import ConfigError, check_choice, check_range

BASELINES = ("rule", "expert")
TRAIN_OPTIONS = {
    # every algorithm: the actor of the best deterministic evaluation on 4 training-split days
    # (every 250 steps and at the start) is the one evaluated; the test days stay unseen
    "*": {"keep_best": True, "eval_every": 250, "eval_episodes": 4, "eval_days": "train"},
    # the proposed method, guided by the expert from the first step: actor pretrained on the
    # demonstrations, demonstrations kept in the replay buffer (DDPGfD), the Q term switched on
    # once the critic has seen 1000 steps of the actors' own data, and a strong imitation weight
    # (annealing it to 0.1 within 4000 steps let the critic pull the actors away: README, MARL)
    "imitative_diffattn": {"demo_replay": True, "pretrain_steps": 2000, "critic_warmup_steps": 1000,
                           "imitation_start": 5.0, "imitation_end": 5.0, "imitation_schedule": "constant"},
}
"""TrainConfig overrides per algorithm ("*": every algorithm); EvalConfig.train_options is merged over it."""
BOUND = "perfect_foresight"
METRICS = ("cost_eur", "voltage_violation_rate", "losses_kwh", "p2p_volume_kwh")


@dataclass
class EvalConfig:
    scenario: str = "ieee33_day"
    """named scenario (simulators.scenario.PRESETS) that defines feeder, prosumers, market and tariff"""
    algos: str = ",".join(ALGORITHMS)
    """comma-separated algorithms (agents.marl.algorithms.ALGORITHMS)"""
    seeds: str = "0,1,2"
    """comma-separated training seeds"""
    total_steps: int = 4000
    """environment steps per training run (the same budget for every algorithm)"""
    max_prosumers: int = 0
    """use only the first N prosumers of the scenario (0 = all)"""
    test_days: int = 5
    """held-out test days evaluated: N of the 45 of the test split spread evenly over the year (0 = all)"""
    demo_days: int = 12
    """training days of expert demonstrations for the imitating algorithms (0 = label online with the rule policy)"""
    baselines: str = ",".join(BASELINES)
    """comma-separated non-learned policies run through the same co-simulation"""
    train_options: dict = dataclasses.field(default_factory=dict)
    """TrainConfig overrides as JSON, per algorithm or "*" for all, merged over TRAIN_OPTIONS, e.g. '{"*": {"update_every": 2}}'"""
    train_dir: str = ""
    """reuse trained actors from this folder (<algo>__s<seed>/actor.pt) instead of training"""
    scenario_seed: int = 0
    """profile-assignment seed of the scenario, the same for every method"""
    results_dir: str = "results"
    """parent folder of the evaluation folder"""
    run_name: str = ""
    """evaluation folder name; empty = <scenario>__marl-eval__<seeds>__<timestamp>"""
    resume: bool = False
    """finish the interrupted evaluation in results_dir/run_name (same settings): keep its demonstrations, finished training and co-simulation runs; unfinished ones are renamed *.interrupted-<time> and redone"""
    progress: bool = True
    """show a progress bar"""

    @property
    def algo_list(self):
        return [a for a in self.algos.split(",") if a]

    @property
    def seed_list(self):
        return [int(s) for s in self.seeds.split(",") if s.strip()]

    @property
    def baseline_list(self):
        return [b for b in self.baselines.split(",") if b]


def validate(cfg):
    for algo in cfg.algo_list:
        check_choice("algos", algo, ALGORITHMS)
    for name in cfg.baseline_list:
        check_choice("baselines", name, BASELINES)
    try:
        seeds = cfg.seed_list
    except ValueError:
        raise ConfigError(f"seeds: {cfg.seeds!r} is not a comma-separated list of integers") from None
    if not seeds:
        raise ConfigError("seeds: at least one seed is required")
    check_range("total_steps", cfg.total_steps, 10, 10**8)
    check_range("test_days", cfg.test_days, 0, 366)
    check_range("demo_days", cfg.demo_days, 0, 366)
    check_train_options(cfg)
    if cfg.train_dir and not Path(cfg.train_dir).is_dir():
        raise ConfigError(f"train_dir: {cfg.train_dir!r} is not a folder")
    if cfg.resume:
        check_resumable(cfg)
    scenario_defaults(cfg)
    return cfg


def recorded_config(cfg):
    """config.json: the settings plus what every algorithm was trained with (TRAIN_OPTIONS merged)."""
    return {**dataclasses.asdict(cfg), "effective_train_options": {a: train_options(cfg, a) for a in cfg.algo_list}}


def load_config(folder):
    """The EvalConfig an evaluation folder was started with (its config.json, recorded-only keys dropped)."""
    fields = {f.name for f in dataclasses.fields(EvalConfig)}
    return EvalConfig(**{k: v for k, v in json.loads((Path(folder) / "config.json").read_text()).items() if k in fields})


def check_resumable(cfg):
    """resume: the named folder exists and was started with the same settings."""
    out = Path(cfg.results_dir) / cfg.run_name
    if not cfg.run_name or not (out / "config.json").is_file():
        raise ConfigError(f"resume: needs run_name of an evaluation folder with a config.json; {str(out)!r} has none")
    before = json.loads((out / "config.json").read_text())
    now = json.loads(json.dumps(recorded_config(cfg)))
    differ = sorted(k for k in now if k not in ("resume", "progress", "results_dir") and before.get(k) != now[k])
    if differ:
        raise ConfigError(f"resume: settings differ from {out / 'config.json'} in {differ}; "
                          f"resume with the same settings or start a new run_name")


def check_train_options(cfg):
    """train_options: {"*" | algorithm: {TrainConfig field: value}}; names checked before anything runs."""
    from agents.marl.train import TrainConfig

    if not isinstance(cfg.train_options, dict):
        raise ConfigError(f"train_options: {cfg.train_options!r} must be a JSON object")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for key, options in cfg.train_options.items():
        if key != "*" and key not in ALGORITHMS:
            raise ConfigError(f"train_options: key {key!r} is not '*' or one of {sorted(ALGORITHMS)}")
        unknown = set(options) - fields if isinstance(options, dict) else {"(not an object)"}
        if unknown:
            raise ConfigError(f"train_options.{key}: unknown TrainConfig fields {sorted(unknown)}")


def train_options(cfg, algo):
    """TrainConfig overrides of ``algo``: TRAIN_OPTIONS then cfg.train_options, each "*" before the algorithm's own."""
    merged = {}
    for table in (TRAIN_OPTIONS, cfg.train_options):
        merged.update(table.get("*", {}))
        merged.update(table.get(algo, {}))
    return merged


def scenario_defaults(cfg):
    """The named scenario's ScenarioConfig, with this evaluation's prosumer count and seed."""
    from simulators.scenario import PRESETS

    base = PRESETS[check_choice("scenario", cfg.scenario, PRESETS)]
    return dataclasses.replace(base, max_prosumers=cfg.max_prosumers, seed=cfg.scenario_seed, grouping="grouped",
                               progress=False, plots=False)


def env_config(base):
    from agents.env import EnvConfig

    return EnvConfig(network=base.network, grid_model=base.grid_model, specs=base.specs,
                     max_prosumers=base.max_prosumers, market=base.market, tariff=base.tariff, seed=base.seed)


# ---- the jobs ----------------------------------------------------------------------------------
def write_demos(cfg, base, out):
    from agents.expert.policy import write_demonstrations
    from simulators.profiles.data import ProfileBank, train_days

    path = out / "demos.npz"
    if path.is_file():  # resumed evaluation: written in full before (the write is atomic)
        return path
    days = train_days(ProfileBank.simbench())
    pick = np.random.default_rng(cfg.scenario_seed).choice(len(days), cfg.demo_days, replace=False)
    write_demonstrations(path, [str(days[i].date()) for i in sorted(pick)], env_config(base))
    return path


def training_finished(run_dir, total_steps):
    """Whether ``run_dir`` holds a finished training run: its final checkpoint is at total_steps."""
    checkpoint = Path(run_dir) / "checkpoint.pt"
    if not checkpoint.is_file():
        return False
    import torch

    return torch.load(checkpoint, weights_only=True)["loop"]["step"] >= total_steps


def cosim_finished(run_dir):
    """Whether ``run_dir`` holds a finished co-simulation run: summary.json not marked incomplete."""
    summary = Path(run_dir) / "summary.json"
    return summary.is_file() and json.loads(summary.read_text()).get("incomplete") is False


def set_aside(run_dir):
    """Rename an unfinished run folder to <name>.interrupted-<time> (kept, out of the way)."""
    run_dir = Path(run_dir)
    if run_dir.exists():
        run_dir.rename(run_dir.with_name(f"{run_dir.name}.interrupted-{time.strftime('%Y%m%d-%H%M%S')}"))


def train_one(cfg, base, algo, seed, out, demos):
    """Train ``algo`` with ``seed`` into out/train/<algo>__s<seed> (a finished one is kept as it is)."""
    from agents.marl.train import TrainConfig, train

    run_dir = out / "train" / f"{algo}__s{seed}"
    if training_finished(run_dir, cfg.total_steps):
        return run_dir
    set_aside(run_dir)
    env_options = {k: v for k, v in dataclasses.asdict(env_config(base)).items() if k != "days"}
    tc = TrainConfig(scenario=cfg.scenario, algo=algo, seed=seed, env_options=env_options,
                     total_steps=cfg.total_steps, demos=str(demos) if demos else "",
                     expert="" if demos else "policy:rule", learning_starts=min(960, cfg.total_steps // 3),
                     buffer_size=cfg.total_steps, imitation_anneal_steps=cfg.total_steps,
                     log_every=max(cfg.total_steps // 30, 1), checkpoint_every=0, eval_episodes=0,
                     results_dir=str(out / "train"), run_name=f"{algo}__s{seed}", progress=False)
    options = train_options(cfg, algo)
    if not demos:  # online rule labels: nothing to pretrain on or to replay
        options = {k: v for k, v in options.items() if k not in ("demo_replay", "pretrain_steps")}
    return train(dataclasses.replace(tc, **options))


def _wall_from_progress(path):
    """Wall time [s] of a finished training run, pretraining and evaluations included: the last
    progress.csv row's wall_s (older runs without it: step / steps per second of the loop)."""
    last = pd.read_csv(path).iloc[-1] if Path(path).is_file() else None
    if last is None:
        return float("nan")
    if "wall_s" in last and pd.notna(last["wall_s"]):
        return float(last["wall_s"])
    return float(last["step"] / last["sps"]) if last["sps"] > 0 else float("nan")


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
    return {"run_dir": str(run_dir), **{k: summary[k] for k in METRICS}}


def bound_one(base, day):
    """Perfect-foresight cost [EUR] of the whole community on ``day``, network limits ignored.

    The least cost any policy can reach that day: voltage limits and the prosumers' soft
    preferences are left out, because a policy that ignores them (or a feeder whose other loads
    already violate the band) must not beat its bound.
    """
    from agents.env import make_scenario
    from agents.expert.joint import JointExpert, perfect_foresight
    from simulators.profiles.data import ProfileBank, assign_profiles, prosumer_days

    specs, net, tariff = make_scenario(env_config(base))
    bank = ProfileBank.simbench()
    profiles = prosumer_days(bank, specs, assign_profiles(specs, base.seed, bank), day)
    unconstrained = [dataclasses.replace(s, preferences=()) for s in specs]
    expert = JointExpert(unconstrained, tariff, net, voltage_penalty_eur_per_pu=0.0)
    return perfect_foresight(expert, profiles, market=base.market)["cost_eur"]


def spread(pool, n):
    """``n`` items of ``pool`` at the centres of n equal parts (n = 0: all of them).

    The test split runs through the year (every 8th day); its first days are all in January,
    with almost no PV, so taking the first N would leave out the midday voltage rise.
    """
    return list(pool) if not n else [pool[int((k + 0.5) * len(pool) / n)] for k in range(min(n, len(pool)))]


def evaluate(cfg):
    """Run the whole evaluation; return the evaluation folder."""
    from simulators.profiles.data import ProfileBank, test_days

    validate(cfg)
    base = scenario_defaults(cfg)
    if cfg.resume:
        out = Path(cfg.results_dir) / cfg.run_name
    else:
        out = new_run_dir(cfg.results_dir, cfg.run_name, cfg.scenario, "marl-eval", cfg.seeds.replace(",", "-"))
        (out / "config.json").write_text(json.dumps(recorded_config(cfg), indent=1))
    days = spread([str(d.date()) for d in test_days(ProfileBank.simbench())], cfg.test_days)
    learned = [(a, s) for a in cfg.algo_list for s in cfg.seed_list]
    total = len(days) * (1 + len(cfg.baseline_list) + len(learned)) + (0 if cfg.train_dir else len(learned))
    bar = tqdm(total=total, disable=not cfg.progress, desc="evaluation")

    runs, walls = {}, {}
    if learned and not cfg.train_dir:
        demos = write_demos(cfg, base, out) if cfg.demo_days else None
        for algo, seed in learned:
            bar.set_postfix_str(f"train {algo} s{seed}")
            runs[algo, seed] = train_one(cfg, base, algo, seed, out, demos)
            walls[algo, seed] = _wall_from_progress(runs[algo, seed] / "progress.csv")
            bar.update()
    else:
        runs = {(a, s): Path(cfg.train_dir) / f"{a}__s{s}" for a, s in learned}
        walls = {key: _wall_from_progress(run_dir / "progress.csv") for key, run_dir in runs.items()}
    pd.DataFrame([{"method": a, "seed": s, "total_steps": cfg.total_steps, "wall_s": walls[a, s],
                   "steps_per_s": cfg.total_steps / walls[a, s], "run_dir": str(runs[a, s])} for a, s in learned],
                 columns=["method", "seed", "total_steps", "wall_s", "steps_per_s", "run_dir"]
                 ).to_csv(out / "training.csv", index=False)

    rows = []
    for day in days:
        bar.set_postfix_str(f"bound {day}")
        rows.append({"method": BOUND, "seed": 0, "day": day, "cost_eur": bound_one(base, day)})
        bar.update()
        for name in cfg.baseline_list:
            bar.set_postfix_str(f"{name} {day}")
            rows.append({"method": name, "seed": 0, "day": day,
                         **cosim_one(base, name, {}, day, out, f"{name}__s0__{day}")})
            bar.update()
        for (algo, seed), run_dir in runs.items():
            bar.set_postfix_str(f"{algo} s{seed} {day}")
            rows.append({"method": algo, "seed": seed, "day": day, "train_wall_s": walls[algo, seed],
                         **cosim_one(base, "actor", {"checkpoint": str(run_dir)}, day, out,
                                     f"{algo}__s{seed}__{day}")})
            bar.update()
    bar.close()
    runs_df = pd.DataFrame(rows)
    runs_df.to_csv(out / "runs.csv", index=False)
    table = summarize(runs_df)
    table.to_csv(out / "table.csv", index=False)
    (out / "table.md").write_text(markdown(table, cfg, days))
    plot_learning_curves(out / "train" if not cfg.train_dir else Path(cfg.train_dir), out / "learning_curves.png")
    plot_envelopes(runs_df, days, out / "voltage_envelopes.png")
    return out


# ---- the table ---------------------------------------------------------------------------------
def summarize(runs):
    """Per method: mean and std over seeds of the per-seed totals (cost) or day means (the rest)."""
    bound = runs[runs.method == BOUND].set_index("day")["cost_eur"]
    learned = runs[runs.method != BOUND].reindex(columns=[*runs.columns.drop("train_wall_s", errors="ignore"),
                                                          "train_wall_s"])  # NaN without trained methods
    per_seed = learned.groupby(["method", "seed"]).agg(
        cost_eur=("cost_eur", "sum"), voltage_violation_rate=("voltage_violation_rate", "mean"),
        losses_kwh=("losses_kwh", "mean"), p2p_volume_kwh=("p2p_volume_kwh", "mean"),
        train_wall_s=("train_wall_s", "first"), bound_eur=("day", lambda d: bound.loc[list(d)].sum()),
        days=("day", "count")).reset_index()
    per_seed["gap"] = (per_seed.cost_eur - per_seed.bound_eur) / per_seed.bound_eur.abs()
    order = {m: i for i, m in enumerate(list(ALGORITHMS) + list(BASELINES))}
    table = []
    for method, g in sorted(per_seed.groupby("method"), key=lambda kv: order.get(kv[0], 99)):
        row = {"method": method, "seeds": len(g), "days": int(g.days.iloc[0])}
        for col in ("cost_eur", "gap", "voltage_violation_rate", "losses_kwh", "p2p_volume_kwh", "train_wall_s"):
            row[f"{col}_mean"] = g[col].mean()
            row[f"{col}_std"] = g[col].std(ddof=0)
        table.append(row)
    table.append({"method": BOUND, "seeds": 1, "days": len(bound), "cost_eur_mean": bound.sum(), "cost_eur_std": 0.0,
                  "gap_mean": 0.0, "gap_std": 0.0})
    return pd.DataFrame(table)


def markdown(table, cfg, days):
    def pm(row, col, fmt):
        mean, std = row.get(f"{col}_mean"), row.get(f"{col}_std")
        return "—" if mean is None or pd.isna(mean) else f"{fmt.format(mean)} ± {fmt.replace('+', '').format(std)}"

    lines = [f"Held-out test days: {', '.join(days)}; cost summed over them; mean ± std over seeds "
             f"{cfg.seeds} (rule and expert are deterministic: std 0); {cfg.total_steps} training steps per run.",
             "", "| method | cost [EUR] | gap to bound | voltage violation rate | losses [kWh/day] "
             "| P2P volume [kWh/day] | training wall [s] |", "|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        r = r.to_dict()
        lines.append(f"| {r['method']} | {pm(r, 'cost_eur', '{:.1f}')} | {pm(r, 'gap', '{:+.1%}')} | "
                     f"{pm(r, 'voltage_violation_rate', '{:.2%}')} | {pm(r, 'losses_kwh', '{:.1f}')} | "
                     f"{pm(r, 'p2p_volume_kwh', '{:.0f}')} | {pm(r, 'train_wall_s', '{:.0f}')} |")
    return "\n".join(lines) + "\n"


# ---- plots -------------------------------------------------------------------------------------
def plot_learning_curves(train_dir, path):
    """Training-episode return and, where the runs evaluated, the validation return, per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {"episode_return": "training episodes", "eval_return": "validation episodes (training-split days)"}
    curves = {key: {} for key in panels}
    for progress in sorted(Path(train_dir).glob("*__s*/progress.csv")):
        algo = progress.parent.name.rsplit("__s", 1)[0]
        df = pd.read_csv(progress)
        for key in panels:
            series = df.dropna(subset=[key]).set_index("step")[key] if key in df else pd.Series(dtype=float)
            if len(series):
                curves[key].setdefault(algo, []).append(series)
    shown = [key for key in panels if curves[key]] or ["episode_return"]
    fig, axes = plt.subplots(1, len(shown), figsize=(8 * len(shown), 4.5), squeeze=False)
    for key, ax in zip(shown, axes[0]):
        for algo, series in curves[key].items():
            frame = pd.concat(series, axis=1)
            ax.plot(frame.index, frame.mean(axis=1), label=algo)
            ax.fill_between(frame.index, frame.min(axis=1), frame.max(axis=1), alpha=0.2)
        ax.set(xlabel="environment steps", ylabel="return per agent (mean over seeds, min-max band)",
               title=f"Learning curves: {panels[key]}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_envelopes(runs, days, path):
    """One panel per test day: each method's per-step lowest and highest bus voltage (its first seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from simulators.units import STEP_H, V_MAX_PU, V_MIN_PU

    fig, axes = plt.subplots(1, len(days), figsize=(4 + 4 * len(days), 4.5), sharey=True, squeeze=False)
    for day, ax in zip(days, axes[0]):
        first = runs[(runs.day == day) & (runs.method != BOUND)].sort_values("seed").groupby("method").head(1)
        for _, r in first.iterrows():
            feeder = pd.read_csv(Path(r.run_dir) / "feeder.csv")
            hours = feeder["step"] * STEP_H
            line, = ax.plot(hours, feeder["vm_min_pu"], lw=1, label=r.method)
            ax.plot(hours, feeder["vm_max_pu"], lw=1, color=line.get_color())
        for v in (V_MIN_PU, V_MAX_PU):
            ax.axhline(v, color="red", ls="--", lw=1)
        ax.set(xlabel="hour", title=f"{day} (first seed)")
    axes[0][0].set_ylabel("feeder min and max Vm [p.u.]")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    from simulators.cli import add_config_flags, given_flags

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cfg = EvalConfig(**given_flags(add_config_flags(parser, EvalConfig, EvalConfig()).parse_args(argv)))
    try:
        out = evaluate(cfg)
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"results: {out}")
    sys.stdout.write((out / "table.md").read_text())
    return out


if __name__ == "__main__":
    main()

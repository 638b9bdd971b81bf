"""Train every method over seeds and profile seeds and evaluate all of them through the mosaik co-simulation.

    python -m agents.marl.evaluate --split validation --days 6 --seeds 0   # recipe work: validation days only
    python -m agents.marl.evaluate                  # the final evaluation: test days, touched once
    python -m agents.marl.evaluate --scenario ieee33_high_pv --algos imitative_diffattn,bc,matd3_bc,matd3 \\
        --demo-options '{"network_limits": false}' --baselines rule,expert,expert_unaware,expert_yesterday  # stressed
    python -m agents.marl.evaluate --run-name <name> --resume       # finish an interrupted evaluation

Training options per algorithm are TRAIN_OPTIONS below, overridable with --train-options.  Every
choice a training run makes (keep-best actor, early stop) uses validation days; ``--split`` says
which days this command evaluates on ('test' is for the final command only).

One folder results/<scenario>__marl-eval__<seeds>__<timestamp>/ holds:
- demos_p<p>.npz: the expert's demonstrations on ``demo_days`` training days for profile seed p;
- train/<algo>__p<p>__s<seed>/: each training run (progress.csv with the critic's fit, actor.pt =
  the kept actor, actor_last.pt, best.json, snapshots/);
- cosim/<method>__p<p>__s<seed>__<day>/: each evaluation day, a complete co-simulation run folder
  (trained actors run inside the prosumer simulators as policy "actor");
- runs.csv: one row per method, profile seed, training seed and day; ``<algo>@last`` rows are the
  last actor of each run, evaluated in the training environment (the same modules and trajectory
  as the co-simulation, tests/test_env.py);
- table.csv / table.md: median and inter-quartile range over runs, and the proposed method's
  per-day paired differences against every other method with bootstrap CIs (agents/marl/report.py);
  comparisons.csv, training.csv;
- test_curve.csv / test_curve.png: the cost on the evaluated days of each run's actor snapshots (of the
  reused runs too with ``--train-dir``, at whatever steps they were saved), computed after all training is
  done, so it can inform no choice;
- energy_by_period.csv: each method's grid purchases, grid sales and P2P trades per period of the day (also in
  table.md; ``python -m agents.marl.report FOLDER`` writes it for an older folder);
- test_days_seen.json: {earlier evaluation folder: its test days among these} (``--fresh-days`` refuses any);
  the test days themselves are appended to results_dir/test_days.csv (the ledger, tracked by git for
  results/, so the guard also knows the evaluations whose folders this machine never had);
- learning_curves.png (training and validation returns, the critic's Q against the Monte-Carlo
  return), voltage_envelopes.png, config.json (``load_config(folder)`` reads it back).
The bound is the perfect-foresight economic optimum of the joint expert's model per day
(voltage limits and preferences left out, so no policy can beat it on cost).
"""

import argparse
import dataclasses
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from agents.env import REWARD_FIELDS
from agents.marl import plots, report
from agents.marl.algorithms import ALGORITHMS
from agents.marl.jobs import (
    bound_one,
    cosim_one,
    env_config,
    env_day,
    exit_with_parent,
    set_aside,
    test_curve,
    training_finished,
    wall_from_progress,
    write_demos,
)
from agents.marl.report import BOUND
from simulators.recorder.recorder import new_run_dir
from simulators.validation import ConfigError, check_choice, check_range, check_seeds

BASELINES = {"rule": ("rule", {}), "expert": ("expert", {}),
             "expert_unaware": ("expert", {"network_limits": False}),
             "expert_yesterday": ("expert", {"forecast": "yesterday"})}
"""non-learned policies run through the same co-simulation: name -> (policy, policy options).  ``expert`` plans
with perfect forecasts of the rest of the day; ``expert_yesterday`` with yesterday's profiles (persistence), what
a prosumer could know: the gap between the two is what forecast information is worth on that scenario"""
SPLITS = ("validation", "test")
IMITATION = {"pretrain_steps": 10000, "learning_starts": 192, "imitation_schedule": "constant", "imitation_start": 1.0,
             "imitation_end": 1.0, "shared_actor": True, "actor_hidden": 128}
"""what every method fed the demonstrations shares: 10000 imitation steps before the first environment step
(validation days: behaviour cloning was still underfitted after 2000, +6.8 % over the bound against +5.6 % after
10000, paired -42.9 [-67.3, -21.1] EUR/day; 30000 tied with 10000 at 2.8 times the wall time; README), and one
actor network for all prosumers (width 128, an agent-id embedding; every prosumer's demonstrations train it) instead
of one per prosumer (twentieth session, validation days, 2 seeds, 600 steps: cheaper for bc, dagger and the proposed
method on the default feeder and for bc and dagger on the stressed one, where at 1800 steps it ties; README "One
actor network for all prosumers"; ``{"*": {"shared_actor": false, "actor_hidden": 64}}`` in train_options gives
the earlier per-prosumer actors)"""
TRAIN_OPTIONS = {
    # every algorithm: a critic on the day-long undiscounted return (γ = 1, 8-step targets, targets tracking
    # at τ 0.01 every critic step), batches of 128 every second step; the actor of the best evaluation on 6
    # validation days kept (evaluated after pretraining and every 250 steps)
    "*": {"keep_best": True, "eval_every": 250, "eval_episodes": 6, "eval_days": "validation", "n_step": 8,
          "tau": 0.01, "batch_size": 128, "update_every": 2},
    # the proposed method (README "How the recipe was chosen", validation days only): demonstrations
    # pretrained and replayed, the critics regressed onto their Monte-Carlo returns, the joint expert's
    # labels of every 4th visited state (DAgger), TD3+BC with the validated Q weight, mean imitation and a
    # σ floor so that exploration stays alive; the critic learns from rewards shaped with the value of stored
    # energy (seventeenth session: a tie on validation days, -4.5 [-17.7, +8.9] EUR/day, kept as it leaves the
    # best policy unchanged and the kept actors came from after the Q term started)
    "imitative_diffattn": {**IMITATION, "demo_replay": True, "critic_pretrain_steps": 1000,
                           "critic_warmup_steps": 300, "imitation_loss": "mean", "min_std": 0.1, "q_weight": 0.3,
                           "expert": "policy:expert", "label_every": 4, "shaping": "storage"},
    "bc": dict(IMITATION),
    "dagger": {**IMITATION, "expert": "policy:expert", "label_every": 4},
    "matd3_bc": {**IMITATION, "demo_replay": True, "imitation_loss": "mean"},
}
"""TrainConfig overrides per algorithm ("*": every algorithm); EvalConfig.train_options is merged over it.
imitative_softmax (the attention ablation) takes imitative_diffattn's recipe unless given its own."""
RECIPE_TWINS = {"imitative_softmax": "imitative_diffattn"}
TRAIN_ENV_OPTIONS = REWARD_FIELDS
"""the training environment's options (agents.env.EnvConfig) that train_options may change: the reward's voltage
penalty and credit; everything else comes from the scenario (feeder, prosumers, market, tariff) or the protocol (day-long
episodes, days from the split)"""


@dataclass
class EvalConfig:
    scenario: str = "ieee33_day"
    """named scenario (simulators.scenario.PRESETS) that defines feeder, prosumers, market and tariff"""
    algos: str = "imitative_diffattn,imitative_softmax,bc,dagger,matd3_bc,matd3,maddpg,maac,iddpg"
    """comma-separated algorithms (agents.marl.algorithms.ALGORITHMS); the first is the proposed method"""
    seeds: str = "0,1,2,3,4"
    """comma-separated training seeds"""
    algo_seeds: dict = dataclasses.field(default_factory=dict)
    """training seeds of particular algorithms instead of ``seeds``, e.g. '{"maac": "0,1,2"}'"""
    scenario_seeds: str = "0"
    """comma-separated profile-assignment seeds of the scenario; each gets its own demonstrations and runs"""
    total_steps: int = 4000
    """environment steps per training run (the same budget for every algorithm)"""
    max_prosumers: int = 0
    """use only the first N prosumers of the scenario (0 = all)"""
    split: str = "test"
    """days evaluated: 'validation' (recipe work) | 'test' (the final command, once)"""
    days: int = 10
    """days evaluated, spread evenly over the split through the year (0 = all)"""
    demo_days: int = 12
    """training days of expert demonstrations for the imitating algorithms (0 = label online with the rule policy)"""
    demo_dir: str = ""
    """reuse the demonstrations demos_p<p>.npz of this folder (checked to be the very ones this evaluation would write)"""
    demo_options: dict = dataclasses.field(default_factory=dict)
    """options of the expert that writes the demonstrations and labels online, e.g. '{"network_limits": false}'"""
    demo_experts: str = ""
    """demonstrations from the LLM: an expert-workflow run folder whose accepted experts (experts/<name>.py) plan
    the demonstrations, coupled in a jailed worker (agents/llm/coupled.py), the other prosumers with the reference
    model (written as code, in the same worker); 'reference': every prosumer's reference model so (the matched control);
    empty: the joint expert (agents/expert).  demo_sources_p<p>.json names each prosumer's source"""
    baselines: str = "rule,expert,expert_yesterday"
    """comma-separated non-learned policies (BASELINES) run through the same co-simulation"""
    train_options: dict = dataclasses.field(default_factory=dict)
    """TrainConfig overrides as JSON, per algorithm or "*" for all, merged over TRAIN_OPTIONS, e.g. '{"*": {"update_every": 2}}'"""
    train_dir: str = ""
    """reuse trained actors from this folder (<algo>__p<p>__s<seed>/actor.pt) instead of training"""
    last_actor: bool = True
    """also evaluate each run's last actor (rows <algo>@last), beside the kept one"""
    snapshot_every: int = 500
    """steps between the actor snapshots of the test curve (0 = no curve)"""
    bootstrap: int = 10000
    """bootstrap resamples of the paired comparisons"""
    workers: int = 1
    """training runs at the same time (processes)"""
    threads: int = 1
    """torch threads of each training run"""
    results_dir: str = "results"
    """parent folder of the evaluation folder"""
    run_name: str = ""
    """evaluation folder name; empty = <scenario>__marl-eval__<seeds>__<timestamp>"""
    resume: bool = False
    """finish the interrupted evaluation in results_dir/run_name (same settings): keep its demonstrations, finished training and co-simulation runs; unfinished ones are renamed *.interrupted-<time> and redone"""
    progress: bool = True
    """show a progress bar"""
    fresh_days: bool = False
    """split 'test': refuse days that an earlier evaluation under results_dir (its folder, or its rows in the
    ledger results_dir/test_days.csv) already evaluated as test days (without it they are warned about and listed
    in test_days_seen.json)"""
    dates: str = ""
    """comma-separated dates of the split to evaluate instead of ``days`` spread over it, e.g. to add seeds to an
    earlier evaluation on its very days (the test-day guard still applies)"""
    unseen_days: bool = False
    """split 'test': spread the ``days`` days over the test days that no earlier evaluation of the scenario touched
    (folders and ledger) instead of over all of them; implies fresh_days.  The days drawn are recorded in
    config.json (``evaluated_days``), which ``resume`` reads back"""

    @property
    def algo_list(self):
        return [a for a in self.algos.split(",") if a]

    @property
    def seed_list(self):
        return check_seeds("seeds", self.seeds)

    def seeds_of(self, algo):
        """Training seeds of ``algo``: its algo_seeds entry, else seeds."""
        if algo in self.algo_seeds:
            return check_seeds(f"algo_seeds.{algo}", self.algo_seeds[algo])
        return self.seed_list

    @property
    def pseed_list(self):
        return check_seeds("scenario_seeds", self.scenario_seeds)

    @property
    def baseline_list(self):
        return [b for b in self.baselines.split(",") if b]


def validate(cfg):
    for algo in cfg.algo_list:
        check_choice("algos", algo, ALGORITHMS)
    for name in cfg.baseline_list:
        check_choice("baselines", name, BASELINES)
    if not isinstance(cfg.algo_seeds, dict) or set(cfg.algo_seeds) - set(cfg.algo_list):
        raise ConfigError(f"algo_seeds: {cfg.algo_seeds!r} must map algorithms of algos to seed lists")
    cfg.pseed_list, [cfg.seeds_of(a) for a in cfg.algo_list]  # parse now: a bad list fails before anything runs
    check_choice("split", cfg.split, SPLITS)
    check_range("total_steps", cfg.total_steps, 10, 10**8)
    for name in ("days", "demo_days", "snapshot_every"):
        check_range(name, getattr(cfg, name), 0, 10**6)
    for name in ("bootstrap", "workers", "threads"):
        check_range(name, getattr(cfg, name), 1, 10**7)
    check_train_options(cfg)
    if cfg.unseen_days and cfg.dates:
        raise ConfigError("dates: give dates or unseen_days, not both")
    if cfg.unseen_days and (cfg.split != "test" or not cfg.days):
        raise ConfigError(f"unseen_days: draws test days (split 'test', days >= 1); got split {cfg.split!r}, "
                          f"days {cfg.days}")
    if not isinstance(cfg.demo_options, dict):
        raise ConfigError(f"demo_options: {cfg.demo_options!r} must be a JSON object")
    if cfg.demo_experts:
        if cfg.demo_options or cfg.demo_dir or not cfg.demo_days:
            raise ConfigError("demo_experts: the coupled generated experts write their own demonstrations; use it "
                              "without demo_options and demo_dir, and with demo_days > 0")
        if cfg.demo_experts != "reference" and not (Path(cfg.demo_experts) / "experts").is_dir():
            raise ConfigError(f"demo_experts: {cfg.demo_experts!r} must be 'reference' or an expert-workflow run "
                              "folder (with experts/)")
    if cfg.train_dir and not Path(cfg.train_dir).is_dir():
        raise ConfigError(f"train_dir: {cfg.train_dir!r} is not a folder")
    if cfg.resume:
        check_resumable(cfg)
    scenario_config(cfg, cfg.pseed_list[0])
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
    ignored = ("resume", "progress", "results_dir", "workers")
    defaults = json.loads(json.dumps(dataclasses.asdict(EvalConfig())))  # a setting added later: its default then
    differ = sorted(k for k in now if k not in ignored and before.get(k, defaults.get(k)) != now[k])
    if differ:
        raise ConfigError(f"resume: settings differ from {out / 'config.json'} in {differ}; "
                          f"resume with the same settings or start a new run_name")


def check_train_options(cfg):
    """train_options: {"*" | algorithm: {TrainConfig field: value}}; names checked before anything runs."""
    from agents.marl.config import TrainConfig

    if not isinstance(cfg.train_options, dict):
        raise ConfigError(f"train_options: {cfg.train_options!r} must be a JSON object")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for key, options in cfg.train_options.items():
        if key != "*" and key not in ALGORITHMS:
            raise ConfigError(f"train_options: key {key!r} is not '*' or one of {sorted(ALGORITHMS)}")
        unknown = set(options) - fields if isinstance(options, dict) else {"(not an object)"}
        if unknown:
            raise ConfigError(f"train_options.{key}: unknown TrainConfig fields {sorted(unknown)}")
        env = options.get("env_options", {})
        if not isinstance(env, dict) or set(env) - set(TRAIN_ENV_OPTIONS):
            raise ConfigError(f"train_options.{key}.env_options: {env!r}; the scenario sets the environment (feeder, "
                              f"prosumers, market, tariff, days) and only {list(TRAIN_ENV_OPTIONS)} may be changed")


def train_options(cfg, algo):
    """TrainConfig overrides of ``algo``: TRAIN_OPTIONS then cfg.train_options, each "*" first, then the
    recipe twin's (RECIPE_TWINS: the ablation shares the proposed method's recipe), then the algorithm's own."""
    merged = {}
    for table in (TRAIN_OPTIONS, cfg.train_options):
        merged.update(table.get("*", {}))
        merged.update(table.get(RECIPE_TWINS.get(algo, algo), {}))
        if algo in RECIPE_TWINS:
            merged.update(table.get(algo, {}))
    return merged


def scenario_config(cfg, pseed):
    """The named scenario's ScenarioConfig with this evaluation's prosumer count and profile seed ``pseed``."""
    from simulators.scenario import PRESETS

    base = PRESETS[check_choice("scenario", cfg.scenario, PRESETS)]
    return dataclasses.replace(base, max_prosumers=cfg.max_prosumers, seed=pseed, grouping="grouped",
                               progress=False, plots=False)


def spread(pool, n):
    """``n`` items of ``pool`` at the centres of n equal parts (n = 0: all of them).

    The splits run through the year (every 8th day); taking the first N would leave out summer.
    """
    return list(pool) if not n else [pool[int((k + 0.5) * len(pool) / n)] for k in range(min(n, len(pool)))]


def split_pool(split):
    """Every day of ``split`` ('test' | 'validation') as ISO dates, in the order of the year."""
    from simulators.profiles.data import ProfileBank, test_days, validation_days

    return [str(d.date()) for d in {"test": test_days, "validation": validation_days}[split](ProfileBank.simbench())]


def evaluation_days(cfg):
    """The days this evaluation runs on: those its folder recorded (resume), else ``days`` spread over the split,
    or with ``unseen_days`` over the test days no earlier evaluation of the scenario touched."""
    if cfg.resume:
        recorded = json.loads((Path(cfg.results_dir) / cfg.run_name / "config.json").read_text())
        if recorded.get("evaluated_days"):
            return list(recorded["evaluated_days"])
    pool = split_pool(cfg.split)
    if cfg.dates:
        dates = [d.strip() for d in cfg.dates.split(",") if d.strip()]
        for d in dates:
            if d not in pool:
                raise ConfigError(f"dates: {d!r} is not one of the {len(pool)} {cfg.split} days "
                                  f"({pool[0]} ... {pool[-1]}, every 8th day of the year)")
        return dates
    if cfg.unseen_days and not cfg.resume:
        touched = set().union(*earlier_evaluations(cfg.results_dir, cfg.scenario).values())
        pool = [d for d in pool if d not in touched]
        if cfg.days > len(pool):  # validate() saw days >= 1
            raise ConfigError(f"days: unseen_days draws 1..{len(pool)} of the {len(pool)} test days of "
                              f"{cfg.scenario!r} that no earlier evaluation touched; got {cfg.days}")
    return spread(pool, cfg.days)


LEDGER = "test_days.csv"
LEDGER_COLUMNS = ("scenario", "day", "evaluation", "source")


def read_ledger(results_dir):
    """The ledger results_dir/test_days.csv: one row per scenario, test day and evaluation that touched it
    (``record_test_days`` appends; rows for evaluations run before the ledger existed were written by hand from
    the README's history, their source says which commit).  No file: no rows.  A file that cannot be read is a
    ConfigError naming it: the ledger is a record, and a guard that silently ignored it would guard nothing."""
    path = Path(results_dir) / LEDGER
    if not path.is_file():
        return pd.DataFrame(columns=LEDGER_COLUMNS)
    try:
        ledger = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"ledger: {str(path)!r} cannot be read as CSV ({exc}); mend or restore it") from None
    missing = [c for c in LEDGER_COLUMNS if c not in ledger.columns]
    if missing:
        raise ConfigError(f"ledger: {str(path)!r} lacks the columns {missing} (expected {list(LEDGER_COLUMNS)})")
    return ledger


def record_test_days(results_dir, scenario, days, evaluation, source="agents.marl.evaluate"):
    """Append ``days`` of ``scenario`` as touched by ``evaluation`` to the ledger (created with its header)."""
    path = Path(results_dir) / LEDGER
    rows = pd.DataFrame({"scenario": scenario, "day": list(days), "evaluation": evaluation, "source": source},
                        columns=LEDGER_COLUMNS)
    rows.to_csv(path, mode="a", header=not path.is_file() or path.stat().st_size == 0, index=False)


def earlier_evaluations(results_dir, scenario):
    """{evaluation: the set of test days it evaluated} for every earlier evaluation of ``scenario``: its rows in
    the ledger (results_dir/test_days.csv) and every folder under results_dir with a config.json of that scenario
    whose split is 'test' (or absent, as in evaluations older than the split) and a runs.csv.  The same date on
    another feeder is another test case.

    A test day is to be touched once, by the final command: a recipe chosen after seeing a day's figures is not
    tested by that day any more.  Folders that cannot be read are skipped (the ledger is the record).
    """
    ledger = read_ledger(results_dir)
    found = {}
    for name, rows in ledger[ledger.scenario == scenario].groupby("evaluation", sort=True):
        found[name] = set(rows.day)
    for config in sorted(Path(results_dir).glob("*/config.json")):
        try:
            recorded = json.loads(config.read_text())
            if (not isinstance(recorded, dict) or recorded.get("split", "test") != "test" or "algos" not in recorded
                    or recorded.get("scenario") != scenario):
                continue
            days = set(pd.read_csv(config.parent / "runs.csv", usecols=["day"])["day"].astype(str))
            found[config.parent.name] = found.get(config.parent.name, set()) | days
        except (OSError, ValueError, KeyError):
            continue
    return found


def _overlap(evaluations, days):
    """{folder: its days among ``days``} of earlier_evaluations' answer, folders without any left out."""
    days = set(days)
    return {folder: sorted(touched & days) for folder, touched in evaluations.items() if touched & days}


def earlier_test_days(results_dir, days, scenario):
    """{evaluation folder: its test days among ``days``} of the earlier evaluations of ``scenario``."""
    return _overlap(earlier_evaluations(results_dir, scenario), days)


def fresh_day_counts(results_dir, scenario, limit=20):
    """The values of ``--days`` up to ``limit`` whose test days no earlier evaluation of ``scenario`` under
    results_dir touched."""
    pool, evaluations = split_pool("test"), earlier_evaluations(results_dir, scenario)
    return [n for n in range(1, min(limit, len(pool)) + 1) if not _overlap(evaluations, spread(pool, n))]


def guard_test_days(cfg, days):
    """Split 'test': the days that earlier evaluations already touched ({folder: days}), warned about; with
    ``fresh_days`` any such day is a ConfigError naming the folders and the --days values that are fresh."""
    if cfg.split != "test":
        return {}
    seen = earlier_test_days(cfg.results_dir, days, cfg.scenario)
    if seen and (cfg.fresh_days or cfg.unseen_days):
        named = "; ".join(f"{folder}: {', '.join(d)}" for folder, d in seen.items())
        raise ConfigError(f"days: {len(set().union(*seen.values()))} of the {len(days)} test days of --days "
                          f"{cfg.days} were already evaluated ({named}); --days values with fresh days only: "
                          f"{fresh_day_counts(cfg.results_dir, cfg.scenario) or 'none up to 20'} (or --unseen-days)")
    if seen:
        print(f"warning: test days evaluated before by {', '.join(seen)}: "
              f"{', '.join(sorted(set().union(*seen.values())))} (listed in test_days_seen.json)", file=sys.stderr)
    return seen


# ---- the jobs ----------------------------------------------------------------------------------
def train_one(cfg, base, algo, seed, out, demos):
    """Train ``algo`` with ``seed`` into out/train/<algo>__p<p>__s<seed> (a finished one is kept as it is)."""
    from agents.marl.train import TrainConfig, train

    name = f"{algo}__p{base.seed}__s{seed}"
    run_dir = out / "train" / name
    if training_finished(run_dir, cfg.total_steps):
        return run_dir
    set_aside(run_dir)
    env_options = {k: v for k, v in dataclasses.asdict(env_config(base)).items() if k != "days"}
    tc = TrainConfig(scenario=cfg.scenario, algo=algo, seed=seed, env_options=env_options,
                     total_steps=cfg.total_steps, demos=str(demos) if demos else "",
                     expert="" if demos else "policy:rule", expert_options=dict(cfg.demo_options) if demos else {},
                     learning_starts=min(960, cfg.total_steps // 3), buffer_size=cfg.total_steps,
                     imitation_anneal_steps=cfg.total_steps, log_every=max(cfg.total_steps // 40, 1),
                     checkpoint_every=0, eval_episodes=0, threads=cfg.threads, results_dir=str(out / "train"),
                     run_name=name, progress=False)
    options = train_options(cfg, algo)
    if "env_options" in options:  # over the scenario's environment, not instead of it (network, specs, seed)
        options["env_options"] = {**env_options, **options["env_options"]}
    if not demos:  # online rule labels: nothing to pretrain on or to replay
        options = {k: v for k, v in options.items() if k not in ("demo_replay", "pretrain_steps", "critic_pretrain_steps")}
    if cfg.snapshot_every:
        options.setdefault("snapshot_every", cfg.snapshot_every)
    return train(dataclasses.replace(tc, **options))


def _train_job(args):
    return str(train_one(*args))


def train_all(cfg, bases, out, bar):
    """Every (algo, profile seed, seed) run, ``cfg.workers`` at a time; {(algo, pseed, seed): run folder}."""
    demos = {p: write_demos(cfg, b, out) if cfg.demo_days else None for p, b in bases.items()}
    jobs = {(a, p, s): (cfg, bases[p], a, s, out, demos[p]) for a in cfg.algo_list for p in bases
            for s in cfg.seeds_of(a)}
    runs = {}
    if cfg.workers == 1:
        for key, job in jobs.items():
            bar.set_postfix_str(f"train {key}")
            runs[key] = Path(_train_job(job))
            bar.update()
        return runs
    with ProcessPoolExecutor(cfg.workers, mp_context=get_context("spawn"), initializer=exit_with_parent,
                             initargs=(os.getpid(),)) as pool:
        futures = {key: pool.submit(_train_job, job) for key, job in jobs.items()}
        for key, future in futures.items():
            runs[key] = Path(future.result())
            bar.update()
    return runs


def evaluate_days(cfg, bases, runs, walls, days, out, bar):
    """runs.csv rows: the bound, every baseline, every kept actor (co-simulation) and last actor (environment)."""
    from agents.env import P2PEnv
    from agents.marl.policy import load_actor

    rows = []
    for pseed, base in bases.items():
        env = P2PEnv(env_config(base)) if cfg.last_actor and runs else None
        last = {k: load_actor(d / "actor_last.pt") for k, d in runs.items()
                if k[1] == pseed and (d / "actor_last.pt").is_file()} if env else {}
        for day in days:
            unit = {"pseed": pseed, "day": day}
            bar.set_postfix_str(f"p{pseed} {day}")
            rows.append({"method": BOUND, "seed": 0, **unit, "cost_eur": bound_one(base, day)})
            for name in cfg.baseline_list:
                policy, options = BASELINES[name]
                rows.append({"method": name, "seed": 0, **unit,
                             **cosim_one(base, policy, options, day, out, f"{name}__p{pseed}__s0__{day}")})
            for (algo, p, seed), run_dir in runs.items():
                if p != pseed:
                    continue
                rows.append({"method": algo, "seed": seed, **unit, "train_wall_s": walls[algo, p, seed],
                             **cosim_one(base, "actor", {"checkpoint": str(run_dir)}, day, out,
                                         f"{algo}__p{p}__s{seed}__{day}")})
                if (algo, p, seed) in last:
                    rows.append({"method": f"{algo}@last", "seed": seed, **unit,
                                 **env_day(env, last[algo, p, seed], day)})
            bar.update()
    return pd.DataFrame(rows)


def evaluate(cfg):
    """Run the whole evaluation; return the evaluation folder."""
    validate(cfg)
    days = evaluation_days(cfg)
    seen = None if cfg.resume else guard_test_days(cfg, days)  # before the folder: a refusal leaves nothing behind
    out = Path(cfg.results_dir) / cfg.run_name if cfg.resume else new_run_dir(
        cfg.results_dir, cfg.run_name, cfg.scenario, "marl-eval", cfg.seeds.replace(",", "-"))
    if not cfg.resume:
        (out / "config.json").write_text(json.dumps({**recorded_config(cfg), "evaluated_days": days}, indent=1))
        (out / "test_days_seen.json").write_text(json.dumps(seen, indent=1))
        if cfg.split == "test":
            record_test_days(cfg.results_dir, cfg.scenario, days, out.name)
    bases = {p: scenario_config(cfg, p) for p in cfg.pseed_list}
    keys = [(a, p, s) for a in cfg.algo_list for p in bases for s in cfg.seeds_of(a)]
    bar = tqdm(total=len(days) * len(bases) + (0 if cfg.train_dir else len(keys)), disable=not cfg.progress,
               desc="evaluation")
    if keys and not cfg.train_dir:
        runs = train_all(cfg, bases, out, bar)
    else:
        runs = {k: Path(cfg.train_dir) / f"{k[0]}__p{k[1]}__s{k[2]}" for k in keys}
    walls = {k: wall_from_progress(d / "progress.csv") for k, d in runs.items()}
    pd.DataFrame([{"method": a, "pseed": p, "seed": s, "wall_s": walls[a, p, s], "run_dir": str(d)}
                  for (a, p, s), d in runs.items()], columns=["method", "pseed", "seed", "wall_s", "run_dir"]
                 ).to_csv(out / "training.csv", index=False)
    runs_df = evaluate_days(cfg, bases, runs, walls, days, out, bar)
    bar.close()
    runs_df.to_csv(out / "runs.csv", index=False)
    write_report(cfg, runs_df, days, out)
    plots.plot_learning_curves(Path(cfg.train_dir) if cfg.train_dir else out / "train", out / "learning_curves.png")
    plots.plot_envelopes(runs_df, spread(days, 5), out / "voltage_envelopes.png")
    if any(next((d / "snapshots").glob("actor_*.pt"), None) for d in runs.values()):  # reused runs' too
        curve = test_curve(bases, runs, days)
        curve.to_csv(out / "test_curve.csv", index=False)
        plots.plot_test_curve(curve, out / "test_curve.png")
    return out


def write_report(cfg, runs_df, days, out):
    """table.csv, comparisons.csv, energy_by_period.csv and table.md of the rows in runs.csv."""
    order = [m for a in cfg.algo_list for m in (a, f"{a}@last")] + cfg.baseline_list
    seeds = cfg.seeds + "".join(f", {a}: {s}" for a, s in cfg.algo_seeds.items())
    trained = (f"training seeds {seeds}, {cfg.total_steps} training steps per run; median [IQR] over runs "
               "(the baselines are deterministic); <algo>@last = the last actor instead of the kept one."
               if cfg.algo_list else "no trained methods; the baselines are deterministic.")
    caption = (f"{cfg.split.capitalize()} days ({len(days)}): {', '.join(days)}; profile seeds {cfg.scenario_seeds}, "
               + trained)
    seen_file = out / "test_days_seen.json"
    seen = json.loads(seen_file.read_text()) if seen_file.is_file() else None
    if seen:
        caption += (f" **{len(set().union(*seen.values()))} of these test days were evaluated before** "
                    f"(test_days_seen.json: {', '.join(seen)}).")
    report.write_tables(runs_df, order, cfg.algo_list[0] if cfg.algo_list else None, caption, out, cfg.bootstrap)


def main(argv=None):
    from simulators.cli import add_config_flags, given_flags

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cfg = EvalConfig(**given_flags(add_config_flags(parser, EvalConfig, EvalConfig(), {"split": SPLITS}).parse_args(argv)))
    try:
        out = evaluate(cfg)
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"results: {out}")
    sys.stdout.write((out / "table.md").read_text())
    return out


if __name__ == "__main__":
    main()

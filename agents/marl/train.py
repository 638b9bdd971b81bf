"""Train prosumer actors with multi-agent RL, CleanRL style: config, seeding, rollout, update, log, checkpoint.

    python -m agents.marl.train --algo imitative_diffattn --env-options '{"max_prosumers": 8}' \\
        --expert policy:rule --total-steps 20000
    python -m agents.marl.train --resume results/<run> --total-steps 40000   # continue a run

One environment step moves every prosumer by 15 minutes; an episode is a day (96 steps).
With demonstrations (``--demos``) the proposed method can start from the expert: ``--demo-replay``
keeps them in the replay buffer for good (DDPGfD), ``--pretrain-steps`` imitates them (and fits the
critic to them) before the first environment step, and ``--critic-warmup-steps`` keeps the Q term
out of the actor loss until the critic has learned from the actors' own transitions.
Everything lands in results/<scenario>__<algo>__<seed>__<timestamp>/: config.json,
progress.csv (means per ``log_every`` steps; ``wall_s``: seconds of the run so far, pretraining
and resumes included), checkpoint.pt + buffer.npz (resume) and actor.pt (for ``--policy actor``).
A resumed run continues identically to an uninterrupted one: the checkpoint holds networks,
targets, optimizers, buffer, every RNG state and the step counter; the current episode is
restored by resetting the environment with its seed and replaying its actions from the buffer
(exact when the environment is deterministic in its seed and the actions; a replay that differs
only at solver tolerance continues with a warning).
"""

import argparse
import dataclasses
import json
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from agents.marl.algorithms import ALGORITHMS, Learner
from agents.marl.buffer import Demonstrations, ReplayBuffer
from agents.marl.checkpoint import load_checkpoint, save_checkpoint
from agents.marl.losses import SCHEDULES, anneal
from agents.marl.policy import save_actor
from simulators.prosumer.interface import OBS_FIELDS
from simulators.recorder.recorder import new_run_dir as make_run_dir
from simulators.validation import ConfigError, check_choice, check_range

LOG_COLUMNS = ("step", "episodes", "episode_return", "critic_loss", "q_mean", "actor_loss", "actor_q",
               "imitation_loss", "beta", "eval_return", "sps", "wall_s")


@dataclass
class TrainConfig:
    scenario: str = "ieee33"
    """name of the training scenario; the first part of the run folder's name"""
    algo: str = "imitative_diffattn"
    """algorithm: a name from ALGORITHMS (imitative_diffattn | matd3 | maddpg | maac | iddpg | bc)"""
    seed: int = 0
    """seeds torch, numpy, python, the replay buffer, the episode draws and the environment"""
    env_options: dict = field(default_factory=dict)
    """agents.env.EnvConfig overrides as JSON, e.g. '{"network": "ieee33", "max_prosumers": 8}'"""
    eval_days: str = "test"
    """days of the evaluation environment (EnvConfig.days)"""
    total_steps: int = 20_000
    """environment steps to train for (one step = every agent acts once)"""
    expert: str = ""
    """online expert labels for every visited state: '' (none) | 'policy:<name>' (POLICIES); e.g. policy:expert, policy:rule"""
    demos: str = ""
    """expert demonstrations, .npz with obs (T, N, F) and actions (T, N, A); used when no online expert"""
    demo_replay: bool = False
    """keep the demonstrations in the replay buffer for good, as DDPGfD (needs demos with rewards, a critic without global state)"""
    pretrain_steps: int = 0
    """gradient steps on the demonstrations before the first environment step: actor by imitation, critic by TD on the demonstration replay"""
    critic_warmup_steps: int = 0
    """environment steps after learning_starts in which the critic learns but the actor only imitates (Q term off)"""
    warmup_with_expert: bool = True
    """act with the online expert until learning_starts (without one: the pretrained actor, else uniformly at random)"""
    learning_starts: int = 960
    """environment steps collected before the first update"""
    buffer_size: int = 100_000
    """replay capacity in environment steps"""
    batch_size: int = 256
    """transitions per gradient step"""
    update_every: int = 1
    """environment steps between update rounds"""
    updates_per_round: int = 1
    """gradient steps per update round"""
    gamma: float = 0.99
    """discount per 15-minute step"""
    tau: float = 0.005
    """Polyak factor of the target networks"""
    actor_lr: float = 3e-4
    """actor learning rate (Adam)"""
    critic_lr: float = 1e-3
    """critic learning rate (Adam)"""
    max_grad_norm: float = 10.0
    """gradient-norm clip (0 = off)"""
    reward_scale: float = 1.0
    """rewards are multiplied by this in the TD target"""
    exploration_noise: float = 0.1
    """std of the Gaussian exploration noise of deterministic actors, in normalized [-1, 1] units"""
    policy_noise: float = 0.2
    """std of the target policy smoothing noise (TD3), normalized units"""
    noise_clip: float = 0.5
    """clip of the target policy smoothing noise, normalized units"""
    entropy_coef: float = 0.01
    """entropy weight α of soft-Q algorithms (maac)"""
    imitation_start: float = 1.0
    """imitation weight β at step 0"""
    imitation_end: float = 0.1
    """imitation weight β after imitation_anneal_steps"""
    imitation_schedule: str = "linear"
    """annealing of β: constant | linear | cosine | exponential"""
    imitation_anneal_steps: int = 20_000
    """environment steps over which β moves from start to end"""
    q_normalize: bool = True
    """divide the actor's Q term by mean|Q| when imitation is on (as TD3+BC)"""
    actor_hidden: int = 64
    """width of the actor's hidden layers"""
    actor_layers: int = 2
    """hidden layers of the actor"""
    shared_actor: bool = False
    """one actor network for all agents plus an agent-id embedding (False: weights per agent)"""
    critic_hidden: int = 128
    """width of the MLP and local critics"""
    embed_dim: int = 64
    """embedding width of the attention critics"""
    n_heads: int = 4
    """attention heads"""
    attn_depth: int = 0
    """layer index giving the differential attention's λ_init = 0.8 - 0.6 exp(-0.3 depth)"""
    critic_neighbourhood: str = "all"
    """attention critics: all (every agent attends to every other: O(N²)) | feeder (within its feeder, plus over the feeders' means: for thousands of agents)"""
    log_every: int = 500
    """environment steps per progress.csv row"""
    eval_every: int = 0
    """environment steps between deterministic evaluation episodes (0 = only at the end)"""
    eval_episodes: int = 1
    """episodes per evaluation (0 = no evaluation)"""
    keep_best: bool = False
    """actor.pt is the actor of the best evaluation (pretrained one at step 0 included; the latest: actor_last.pt); needs eval_days other than 'test'"""
    checkpoint_every: int = 5_000
    """environment steps between checkpoints (one is always written at the end)"""
    results_dir: str = "results"
    """parent folder of the run folder"""
    run_name: str = ""
    """run folder name; empty = <scenario>__<algo>__<seed>__<timestamp>"""
    threads: int = 2
    """torch CPU threads"""
    progress: bool = True
    """show a progress bar"""


def validate(cfg):
    """Check every field before anything runs; raises ConfigError naming field, value, allowed range."""
    check_choice("algo", cfg.algo, ALGORITHMS)
    check_choice("imitation_schedule", cfg.imitation_schedule, SCHEDULES)
    check_choice("critic_neighbourhood", cfg.critic_neighbourhood, NEIGHBOURHOODS)
    if cfg.critic_neighbourhood != "all" and ALGORITHMS[cfg.algo].critic not in NEIGHBOURHOOD_CRITICS:
        raise ConfigError(f"critic_neighbourhood: {cfg.critic_neighbourhood!r} needs an attention critic; algo "
                          f"{cfg.algo!r} has {ALGORITHMS[cfg.algo].critic or 'none'!r} (allowed: all)")
    for name in ("total_steps", "batch_size", "buffer_size", "update_every", "updates_per_round", "log_every",
                 "actor_hidden", "actor_layers", "critic_hidden", "embed_dim", "n_heads", "threads"):
        check_range(name, getattr(cfg, name), 1, 10**9)
    for name in ("learning_starts", "eval_every", "eval_episodes", "checkpoint_every", "attn_depth", "pretrain_steps",
                 "critic_warmup_steps",
                 "imitation_anneal_steps"):
        check_range(name, getattr(cfg, name), 0, 10**9)
    check_range("gamma", cfg.gamma, 0.0, 1.0)
    check_range("tau", cfg.tau, 0.0, 1.0, lo_open=True)
    if not isinstance(cfg.env_options, dict):
        raise ConfigError(f"env_options: {cfg.env_options!r} must be a JSON object")
    if cfg.expert and not cfg.expert.startswith("policy:"):
        raise ConfigError(f"expert: {cfg.expert!r} is not one of '', 'policy:<name>'")
    if cfg.keep_best and (not cfg.eval_episodes or cfg.eval_days == "test"):
        raise ConfigError(f"keep_best: selects the actor on evaluation episodes; needs eval_episodes > 0 (got "
                          f"{cfg.eval_episodes}) and eval_days other than 'test' (got {cfg.eval_days!r}), so that "
                          f"the held-out test days stay unseen")
    algo = ALGORITHMS[cfg.algo]
    if (cfg.pretrain_steps or cfg.demo_replay) and not cfg.demos:
        raise ConfigError("demos: pretrain_steps > 0 and demo_replay learn from demonstrations; give demos (.npz)")
    if cfg.demo_replay and (not algo.critic or algo.needs_state):
        raise ConfigError(f"demo_replay: algo {cfg.algo!r} has {'no critic' if not algo.critic else 'a critic that reads'}"
                          f"{'' if not algo.critic else ' the global state, which demonstrations do not hold'}; "
                          f"allowed with: {sorted(k for k, a in ALGORITHMS.items() if a.critic and not a.needs_state)}")
    return cfg


# ---- environment and expert ------------------------------------------------------------
def make_env(cfg, evaluation=False):
    """The P2P training environment over the co-simulation's modules (agents/env.py)."""
    from agents.env import EnvConfig, P2PEnv

    allowed = {f.name for f in dataclasses.fields(EnvConfig)}
    if set(cfg.env_options) - allowed:
        raise ConfigError(f"env_options: unknown keys {sorted(set(cfg.env_options) - allowed)}; "
                          f"allowed: {sorted(allowed)}")
    options = {"seed": cfg.seed, **cfg.env_options, **({"days": cfg.eval_days} if evaluation else {})}
    return P2PEnv(EnvConfig(**options))


def make_expert(cfg, env):
    """Online expert ``f(obs (N, F)) -> actions (N, A)`` named by cfg.expert, or None."""
    if not cfg.expert:
        return None
    from simulators.prosumer.policies import PolicyContext, make_policy

    policy = make_policy(cfg.expert.split(":", 1)[1],
                         PolicyContext(specs=env.specs, tariff=env.tariff, seed=cfg.seed,
                                       network=env.cfg.network))
    ids = np.arange(env.n_agents)
    return lambda obs: policy.act(obs, ids)


NEIGHBOURHOODS = ("all", "feeder")
NEIGHBOURHOOD_CRITICS = ("diffattn", "softmax_attn")


def critic_groups(cfg, env):
    """Attention neighbourhood label per agent (None = everyone): the feeder of its bus."""
    if cfg.critic_neighbourhood == "all":
        return None
    from simulators.grid.networks import feeder_groups

    return feeder_groups(env.net, [s.bus for s in env.specs])


# ---- the run folder --------------------------------------------------------------------
def new_run_dir(cfg):
    path = make_run_dir(cfg.results_dir, cfg.run_name, cfg.scenario, cfg.algo, cfg.seed)
    (path / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    return path


def train(cfg, make_env=make_env, expert_fn=None, resume=None):
    """Train (or continue the run in folder ``resume``) up to cfg.total_steps; return the run folder.

    ``make_env(cfg, evaluation)`` builds environments with the batched API (reset_batch, step_batch,
    state, n_agents, obs_dim, act_dim); ``expert_fn(obs) -> actions`` overrides cfg.expert.
    """
    # ---- config, seeding, environment ---------------------------------------------------
    validate(cfg)
    clock = _Clock()
    algo = ALGORITHMS[cfg.algo]
    torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)  # episode seeds and random warm-up actions
    env = make_env(cfg, False)
    expert = expert_fn or make_expert(cfg, env)
    if algo.imitation and expert is None and not cfg.demos:
        raise ConfigError(f"algo: {cfg.algo!r} imitates an expert; give expert or demos")
    n, f, a = env.n_agents, env.obs_dim, env.act_dim
    low, high = _action_bounds(env)
    ep = {"seed": int(rng.integers(2**31)), "t": 0, "return": np.zeros(n), "count": 0}
    obs = env.reset_batch(seed=ep["seed"])
    state_dim = len(env.state()) if algo.needs_state else 0

    learner = Learner(algo, cfg, n, f, a, state_dim, action_low=low.tolist(), action_high=high.tolist(),
                      groups=critic_groups(cfg, env))
    store_labels = algo.imitation and expert is not None  # else the expert only acts during warm-up
    demos = Demonstrations(cfg.demos, n, f, a, seed=cfg.seed + 1) if cfg.demos else None
    kept = len(demos) if cfg.demo_replay else 0
    buffer = ReplayBuffer(cfg.buffer_size + kept, n, f, a, state_dim, expert=store_labels, seed=cfg.seed)

    # ---- fresh run or resume -----------------------------------------------------------
    step, log, best = 0, _LogAccumulator(), {"eval_return": -float("inf"), "step": -1}
    eval_env = make_env(cfg, True) if cfg.eval_episodes else None
    if resume:
        run_dir = Path(resume)
        step, ep, log, best, clock.before = _load(run_dir, learner, buffer, demos, rng)
        obs = _restore_episode(env, ep, buffer)
    else:
        run_dir = new_run_dir(cfg)
        _pretrain(cfg, learner, buffer, demos, log, run_dir, clock)
        if cfg.keep_best:  # the starting (pretrained) actor is a candidate too
            _keep_if_best(run_dir, learner, best, evaluate(learner, eval_env, cfg.eval_episodes), 0, env)
    t_start, step_start = time.perf_counter(), step

    # ---- the loop ----------------------------------------------------------------------
    bar = tqdm(total=cfg.total_steps, initial=step, disable=not cfg.progress, desc=cfg.algo)
    while step < cfg.total_steps:
        # rollout: one step of every agent
        warmup = step < cfg.learning_starts
        need_label = store_labels or (warmup and expert is not None and cfg.warmup_with_expert)
        label = np.asarray(expert(obs), dtype=np.float32) if need_label else None
        if not warmup or (cfg.pretrain_steps and label is None):
            action = learner.act(obs, explore=True)
        elif label is not None and cfg.warmup_with_expert:
            action = label
        else:
            action = rng.uniform(low, high, size=(n, a))
        action = np.clip(action, low, high).astype(np.float32)  # float32: exactly what the buffer stores
        transition = {"obs": obs, "act": action}
        if store_labels:
            transition["expert_act"] = label
        if state_dim:
            transition["state"] = env.state()
        next_obs, reward, done, _ = env.step_batch(action)
        if state_dim:
            transition["next_state"] = env.state()
        buffer.add(**transition, rew=reward, next_obs=next_obs, done=float(done))
        ep["t"] += 1
        ep["return"] += reward
        obs = next_obs
        if done:
            log.add(episode_return=float(ep["return"].mean()))
            ep.update(seed=int(rng.integers(2**31)), t=0, count=ep["count"] + 1)
            ep["return"] = np.zeros(n)
            obs = env.reset_batch(seed=ep["seed"])
        step += 1

        # update: critic every round, actor every policy_delay-th
        if step > cfg.learning_starts and step % cfg.update_every == 0:
            beta = anneal(cfg.imitation_schedule, cfg.imitation_start, cfg.imitation_end, step,
                          cfg.imitation_anneal_steps)
            use_q = step > cfg.learning_starts + cfg.critic_warmup_steps
            for _ in range(cfg.updates_per_round):
                batch = buffer.sample(cfg.batch_size)
                imitation = _imitation_batch(algo, batch, demos, cfg.batch_size)
                log.add(beta=beta, **learner.update(batch, imitation, beta, use_q=use_q))

        # logging, evaluation, checkpoint
        eval_due = cfg.eval_episodes and ((cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.total_steps)
        if eval_due:
            eval_return = evaluate(learner, eval_env, cfg.eval_episodes)
            log.add(eval_return=eval_return)
            if cfg.keep_best:
                _keep_if_best(run_dir, learner, best, eval_return, step, env)
        if step % cfg.log_every == 0 or step == cfg.total_steps:
            sps = (step - step_start) / max(time.perf_counter() - t_start, 1e-9)
            log.write(run_dir / "progress.csv", step=step, episodes=ep["count"], sps=sps, wall_s=clock())
        if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == cfg.total_steps:
            _save(run_dir, learner, buffer, demos, rng, step, ep, log, env, best, clock())
        bar.update(1)
    bar.close()
    return run_dir


def _pretrain(cfg, learner, buffer, demos, log, run_dir, clock):
    """Demonstration replay into the buffer, then cfg.pretrain_steps gradient steps on it (row step 0)."""
    if cfg.demo_replay:
        replay = demos.transitions()
        if "expert_act" in buffer.shapes:
            replay["expert_act"] = replay["act"]
        buffer.prefill(**replay)
    if not cfg.pretrain_steps:
        return
    for _ in range(cfg.pretrain_steps):
        batch = buffer.sample(cfg.batch_size) if cfg.demo_replay else None
        log.add(**learner.pretrain(batch, demos.sample(cfg.batch_size)))
    log.write(run_dir / "progress.csv", step=0, episodes=0, sps=float("nan"), wall_s=clock())


def _action_bounds(env):
    """(low, high) float32 arrays (A,): the environment's own if it has them, else the interface's."""
    from simulators.prosumer.interface import ACTION_HIGH, ACTION_LOW

    low, high = getattr(env, "action_low", None), getattr(env, "action_high", None)
    low, high = (ACTION_LOW, ACTION_HIGH) if low is None else (low, high)
    return np.asarray(low, dtype=np.float32), np.asarray(high, dtype=np.float32)


def _imitation_batch(algo, batch, demos, batch_size):
    """(obs, expert actions) for the imitation term: online labels if stored, else demonstrations."""
    if not algo.imitation:
        return None
    if "expert_act" in batch:
        return batch["obs"], batch["expert_act"]
    return demos.sample(batch_size)


def evaluate(learner, env, episodes):
    """Mean over agents of the undiscounted return of deterministic episodes on fixed seeds."""
    returns = []
    for k in range(episodes):
        obs, done, total = env.reset_batch(seed=10**6 + k), False, 0.0
        while not done:
            obs, reward, done, _ = env.step_batch(learner.act(obs, explore=False))
            total += float(np.mean(reward))
        returns.append(total)
    return float(np.mean(returns))


def _restore_episode(env, ep, buffer):
    """Bring the environment to step ep['t'] of the current episode by replaying its stored actions."""
    obs = env.reset_batch(seed=ep["seed"])
    if ep["t"] == 0:
        return obs
    for action in buffer.recent("act", ep["t"]):
        obs, _, _, _ = env.step_batch(action)
    replayed, stored = np.asarray(obs, dtype=np.float32), buffer.recent("next_obs", 1)[0]
    if not np.array_equal(replayed, stored):
        gap = float(np.max(np.abs(replayed - stored)))
        if gap > 1e-5:
            raise RuntimeError(f"resume: replaying the current episode reproduced the stored observation only to "
                               f"{gap:.3g}; the environment is not deterministic given its seed and the actions")
        # e.g. a power flow warm-started from an earlier episode's solution: equal to solver tolerance only
        warnings.warn(f"resume: replayed observation differs from the stored one by {gap:.3g}; the run "
                      f"continues, but not bit-identically", stacklevel=2)
    return obs


class _Clock:
    """Wall seconds of a run so far (progress.csv's wall_s): since train() began, plus ``before``, the
    seconds a resumed run had spent up to its checkpoint."""

    def __init__(self):
        self.before, self.start = 0.0, time.perf_counter()

    def __call__(self):
        return self.before + time.perf_counter() - self.start


class _LogAccumulator:
    """Means of the metrics since the last progress.csv row."""

    def __init__(self, sums=None, counts=None):
        self.sums, self.counts = dict(sums or {}), dict(counts or {})
        self.columns = None  # progress.csv's header, read or written once

    def add(self, **values):
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
            self.counts[k] = self.counts.get(k, 0) + 1

    def write(self, path, **fixed):
        row = {k: self.sums[k] / self.counts[k] for k in self.sums}
        row.update(fixed)
        new = not path.exists()
        if self.columns is None and new:
            self.columns = LOG_COLUMNS
        elif self.columns is None:  # a resumed run keeps its file's header (an older run may lack newer columns)
            with path.open() as fh:
                self.columns = tuple(fh.readline().strip().split(","))
        with path.open("a") as fh:
            if new:
                fh.write(",".join(self.columns) + "\n")
            fh.write(",".join(_fmt(row.get(c, float("nan"))) for c in self.columns) + "\n")
        self.sums, self.counts = {}, {}


def _fmt(x):
    return str(int(x)) if isinstance(x, int) else f"{x:.6g}"


def _save(run_dir, learner, buffer, demos, rng, step, ep, log, env, best, wall_s):
    """Checkpoint for resuming, plus the latest actor for the co-simulation policy (actor.pt, or
    actor_last.pt when keep_best leaves actor.pt to the best evaluation)."""
    loop = {"step": step, "episode": {**ep, "return": torch.as_tensor(ep["return"])},
            "log": {"sums": log.sums, "counts": log.counts}, "best": best, "wall_s": float(wall_s)}
    save_checkpoint(run_dir, learner, buffer, demos, rng, loop)
    _write_actor(run_dir / ("actor_last.pt" if learner.cfg.keep_best else "actor.pt"), learner, step, env)


def _write_actor(path, learner, step, env):
    fields = getattr(env, "obs_fields", OBS_FIELDS if env.obs_dim == len(OBS_FIELDS) else ())
    save_actor(path, learner.actor, algo=learner.cfg.algo, step=step, obs_fields=fields)


def _keep_if_best(run_dir, learner, best, eval_return, step, env):
    """Write actor.pt and best.json when ``eval_return`` beats the best so far (ties keep the earlier)."""
    if eval_return > best["eval_return"]:
        best.update(eval_return=float(eval_return), step=int(step))
        _write_actor(run_dir / "actor.pt", learner, step, env)
        (run_dir / "best.json").write_text(json.dumps(best))


def _load(run_dir, learner, buffer, demos, rng):
    """(step, episode counters, log accumulator, best evaluation, wall seconds so far) of the checkpoint
    in ``run_dir``; restores the rest in place."""
    loop = load_checkpoint(run_dir, learner, buffer, demos, rng)
    ep = {**loop["episode"], "return": loop["episode"]["return"].numpy().copy()}
    best = loop.get("best", {"eval_return": -float("inf"), "step": -1})
    return (loop["step"], ep, _LogAccumulator(loop["log"]["sums"], loop["log"]["counts"]), best,
            float(loop.get("wall_s", float("nan"))))


# ---- command line ----------------------------------------------------------------------
CLI_CHOICES = {"algo": ALGORITHMS, "imitation_schedule": SCHEDULES}


def parse_args(argv=None):
    """TrainConfig from flags (field docstrings are the help); --resume reads the run's config.json."""
    from simulators.cli import add_config_flags, given_flags

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resume", help="continue the run in this folder (other flags override its config)")
    args = given_flags(add_config_flags(parser, TrainConfig, TrainConfig(), CLI_CHOICES).parse_args(argv))
    resume = args.pop("resume", None)
    base = dataclasses.asdict(TrainConfig())
    if resume:
        base.update(json.loads((Path(resume) / "config.json").read_text()))
    base.update(args)
    return TrainConfig(**base), resume


def main(argv=None):
    cfg, resume = parse_args(argv)
    run_dir = train(cfg, resume=resume)
    print(f"results: {run_dir}")


if __name__ == "__main__":
    sys.exit(main())

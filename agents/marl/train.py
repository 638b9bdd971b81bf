"""Train prosumer actors with multi-agent RL, CleanRL style: config, seeding, rollout, update, logging, checkpoint.

    python -m agents.marl.train --algo imitative_diffattn --env-options '{"max_prosumers": 8}' \\
        --expert policy:rule --total-steps 20000
    python -m agents.marl.train --resume results/<run> --total-steps 40000   # continue a run

One environment step moves every prosumer by 15 minutes; an episode is a day (96 steps).
The expert enters three ways: demonstrations (``--demos``; ``--demo-replay`` keeps them in the
replay buffer for good, DDPGfD), pretraining on them (``--pretrain-steps`` of actor imitation, then
up to ``--critic-pretrain-steps`` of TD on their replay until the TD error settles), and online
labels of the states the actors visit (``--expert policy:expert``: the joint expert planned from
the visited state, DAgger).  ``--critic-warmup-steps`` keeps the Q term out of the actor loss until
the critic has learned from the actors' own transitions.  The actor is evaluated every
``--eval-every`` steps on validation days (never test days); ``--keep-best`` keeps the best actor,
``--early-stop-patience`` stops when it has not improved for that many evaluations, and every
evaluation logs how well the first critic's Q matches the Monte-Carlo return (q_bias, q_corr).
``--shaping storage`` shapes the rewards the critic learns from with the value of stored energy
(agents/marl/shaping.py; potential-based, so the optimal policy is unchanged; shaping.json in the run).

Everything lands in results/<scenario>__<algo>__<seed>__<timestamp>/: config.json,
progress.csv (runlog.LOG_COLUMNS; means per ``log_every`` steps), checkpoint.pt + buffer.npz
(resume), actor.pt (for ``--policy actor``), best.json and actor_last.pt with keep_best,
snapshots/actor_<step>.pt with ``--snapshot-every``.  A resumed run continues identically to an
uninterrupted one: the checkpoint holds networks, targets, optimizers, buffer, labels, every RNG
state and the counters; the current episode is restored by resetting the environment with its
seed and replaying its actions from the buffer (exact when the environment is deterministic in
its seed and the actions; a replay that differs only at solver tolerance continues with a warning).
"""

import argparse
import dataclasses
import json
import random
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from agents.marl.algorithms import ALGORITHMS, Learner
from agents.marl.buffer import Demonstrations, LabelSet, ReplayBuffer
from agents.marl.checkpoint import load_checkpoint, save_checkpoint
from agents.marl.config import CLI_CHOICES, TrainConfig, validate
from agents.marl.losses import anneal
from agents.marl.policy import save_actor
from agents.marl.runlog import Clock, LogAccumulator
from agents.marl.shaping import StoragePotential, make_potential
from simulators.prosumer.interface import OBS_FIELDS
from simulators.recorder.recorder import new_run_dir as make_run_dir
from simulators.validation import ConfigError

__all__ = ["TrainConfig", "evaluate", "make_env", "make_expert", "train"]
SETTLE_WINDOW = 100
"""critic pretraining compares the mean TD loss of consecutive windows of this many steps"""
SHAPING_FILE = "shaping.json"
"""the run's shaping potential (value of stored energy per step, the days it came from), read back on resume"""


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
    """Online expert ``f(obs (N, F)) -> actions (N, A)`` for the state ``env`` is in, or None.

    'policy:expert' plans the joint expert from the environment's own state (StateExpert: labels
    of the states the actors visit); any other policy acts on the observation alone.
    """
    if not cfg.expert:
        return None
    name = cfg.expert.split(":", 1)[1]
    if name == "expert":
        from agents.expert.policy import StateExpert

        labeller = StateExpert(env, cfg.expert_options)
        return lambda obs: labeller.label(env)
    from simulators.prosumer.policies import PolicyContext, make_policy

    policy = make_policy(name, PolicyContext(specs=env.specs, tariff=env.tariff, seed=cfg.seed,
                                             network=env.cfg.network, options=dict(cfg.expert_options)))
    ids = np.arange(env.n_agents)
    return lambda obs: policy.act(obs, ids)


def critic_groups(cfg, env):
    """Attention neighbourhood label per agent (None = everyone): the feeder of its bus."""
    if cfg.critic_neighbourhood == "all":
        return None
    from simulators.grid.networks import feeder_groups

    return feeder_groups(env.net, [s.bus for s in env.specs])


# ---- the state of a run ----------------------------------------------------------------
@dataclass
class Run:
    """Everything train() moves along: the parts, the counters, the current episode."""

    cfg: TrainConfig
    env: object
    eval_env: object
    eval_days: list
    learner: Learner
    buffer: ReplayBuffer
    labels: LabelSet
    expert: object
    rng: np.random.Generator
    dir: Path = None
    step: int = 0
    episode: dict = None
    obs: np.ndarray = None
    log: LogAccumulator = None
    best: dict = None
    clock: Clock = None
    stopped: bool = False
    potential: StoragePotential = None
    """reward shaping of what the critic learns from (None: the environment's rewards)"""

    @property
    def algo(self):
        return self.learner.algo


def seed_everything(cfg):
    torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    return np.random.default_rng(cfg.seed)  # episode seeds and random warm-up actions


def setup(cfg, make_env, expert_fn, resume):
    """Environments, expert, learner, buffer and labels; a fresh run folder (pretrained) or a resumed one."""
    rng = seed_everything(cfg)
    algo = ALGORITHMS[cfg.algo]
    env = make_env(cfg, False)
    expert = expert_fn or make_expert(cfg, env)
    if algo.imitation and expert is None and not cfg.demos:
        raise ConfigError(f"algo: {cfg.algo!r} imitates an expert; give expert or demos")
    if algo.online_labels and expert is None:
        raise ConfigError(f"expert: algo {cfg.algo!r} learns from the expert's labels of the states it visits; "
                          f"give expert, e.g. 'policy:expert'")
    n, f, a = env.n_agents, env.obs_dim, env.act_dim
    low, high = _action_bounds(env)
    demos = Demonstrations(cfg.demos, n, f, a) if cfg.demos else None
    if demos is not None and not resume:  # before the episode starts: the replay resets the environment
        _relabel_demos(demos, env)
    episode = {"seed": int(rng.integers(2**31)), "t": 0, "return": np.zeros(n), "count": 0}
    obs = env.reset_batch(seed=episode["seed"])  # (a resumed run replaces both from its checkpoint)
    state_dim = len(env.state()) if algo.needs_state else 0
    learner = Learner(algo, cfg, n, f, a, state_dim, action_low=low.tolist(), action_high=high.tolist(),
                      groups=critic_groups(cfg, env), action_names=_action_names(env))
    kept = len(demos) if cfg.demo_replay else 0
    eval_env = make_env(cfg, True) if cfg.eval_episodes else None
    run = Run(cfg, env, eval_env, evaluation_days(eval_env, cfg.eval_episodes), learner,
              ReplayBuffer(cfg.buffer_size + kept, n, f, a, state_dim, seed=cfg.seed),
              LabelSet(n, f, a, demos, seed=cfg.seed + 1), expert, rng, log=LogAccumulator(),
              episode=episode, obs=obs, best={"eval_return": -float("inf"), "step": -1, "stale": 0}, clock=Clock())
    if resume:
        run.dir = Path(resume)
        run.potential = _potential(cfg, env, run.dir, resume=True)
        _load(run)
        run.obs = _restore_episode(env, run.episode, run.buffer)
        return run
    run.dir = new_run_dir(cfg)
    run.potential = _potential(cfg, env, run.dir, resume=False)
    pretrain(run, demos)
    snapshot(run)
    if cfg.eval_episodes and cfg.keep_best:  # the starting (pretrained) actor is a candidate too
        evaluate_and_keep(run)
    if run.log.sums:  # row 0: pretraining and the first evaluation
        run.log.write(run.dir / "progress.csv", step=0, episodes=0, sps=float("nan"), labels=len(run.labels),
                      wall_s=run.clock())
    return run


def _relabel_demos(demos, env):
    """Replay the demonstrations in ``env`` for their rewards when they were recorded under another reward
    (agents.env.REWARD_FIELDS: the voltage penalty's weight or credit); the file itself is left as it is."""
    from agents.env import REWARD_FIELDS, EnvConfig, P2PEnv, relabel_rewards
    from agents.expert.policy import load_demonstrations

    if not isinstance(env, P2PEnv):
        return
    arrays, meta = load_demonstrations(demos.path)
    recorded = {**dataclasses.asdict(EnvConfig()), **meta.get("env_config", {})}  # fields added since: defaults
    differ = {k: recorded[k] for k in REWARD_FIELDS if recorded[k] != getattr(env.cfg, k)}
    if differ and {"day", "step"} <= set(arrays) and meta.get("dates"):
        demos.reward = relabel_rewards(env, demos.obs, demos.actions, arrays["day"], meta["dates"])
        print(f"demos: rewards recorded under {differ} replayed under "
              f"{ {k: getattr(env.cfg, k) for k in differ} }", flush=True)


def _potential(cfg, env, run_dir, resume):
    """The shaping potential of the run: read back from its folder on resume, else computed and written there."""
    if cfg.shaping == "none":
        return None
    if not all(hasattr(env, a) for a in ("bank", "specs", "assignment", "fleet")):
        raise ConfigError(f"shaping: {cfg.shaping!r} values stored energy with the joint expert on the "
                          f"environment's own days; it needs agents.env.P2PEnv (got {type(env).__name__})")
    path = Path(run_dir) / SHAPING_FILE
    if resume and path.is_file():
        return StoragePotential.from_dict(json.loads(path.read_text()), env.obs_fields)
    potential, days = make_potential(env, cfg.expert_options, cfg.shaping_days)
    potential.save(path, days)
    return potential


def new_run_dir(cfg):
    path = make_run_dir(cfg.results_dir, cfg.run_name, cfg.scenario, cfg.algo, cfg.seed)
    (path / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    return path


def pretrain(run, demos):
    """Demonstration replay into the buffer; actor imitation; the critics regressed onto the demonstrations'
    Monte-Carlo returns until that error settles (then the targets start from them)."""
    cfg, learner = run.cfg, run.learner
    if cfg.demo_replay:
        run.buffer.prefill(**demos.transitions(run.potential))
    for _ in range(cfg.pretrain_steps):
        run.log.add(**learner.pretrain_actor(run.labels.sample(cfg.batch_size)))
    if not cfg.critic_pretrain_steps:
        return
    learner.fit_reward_norm(run.buffer.data["rew"][:len(run.buffer)])
    returns = torch.from_numpy(demos.returns_to_go(cfg.gamma, run.potential))
    rng = np.random.default_rng(cfg.seed + 2)
    obs, act = torch.from_numpy(demos.obs), torch.from_numpy(demos.actions)
    # the demonstrations' (shaped) step rewards, already at the front of the replay (critic pretraining needs it)
    rewards = torch.from_numpy(run.buffer.data["rew"][:len(demos)]) if learner.reward_model is not None else None
    losses = []
    while len(losses) < cfg.critic_pretrain_steps and not _settled(losses, cfg.critic_pretrain_tol):
        idx = torch.from_numpy(rng.integers(len(demos), size=cfg.batch_size))
        losses.append(learner.fit_critic_mc(obs[idx], act[idx], returns[idx])["critic_mc_loss"])
        if rewards is not None:  # the reward model learns the step's reward alongside, on the same draws
            run.log.add(**learner.fit_reward_model(obs[idx], act[idx], rewards[idx]))
    learner.critic_target.load_state_dict(learner.critic.state_dict())
    learner.actor_target.load_state_dict(learner.actor.state_dict())
    run.log.add(critic_pretrain_steps=len(losses), critic_mc_loss=float(np.mean(losses[-SETTLE_WINDOW:])))


def _settled(losses, tol):
    """Whether the mean TD loss of the last SETTLE_WINDOW steps moved by less than ``tol`` (relative)."""
    if len(losses) < 2 * SETTLE_WINDOW or len(losses) % SETTLE_WINDOW:
        return False
    last, before = np.mean(losses[-SETTLE_WINDOW:]), np.mean(losses[-2 * SETTLE_WINDOW:-SETTLE_WINDOW])
    return abs(before - last) <= tol * max(before, 1e-12)


# ---- the loop ----------------------------------------------------------------------------
def train(cfg, make_env=make_env, expert_fn=None, resume=None):
    """Train (or continue the run in folder ``resume``) up to cfg.total_steps; return the run folder.

    ``make_env(cfg, evaluation)`` builds environments with the batched API (reset_batch, step_batch,
    state, n_agents, obs_dim, act_dim); ``expert_fn(obs) -> actions`` overrides cfg.expert.
    """
    validate(cfg)
    run = setup(cfg, make_env, expert_fn, resume)
    t_start, step_start = time.perf_counter(), run.step
    bar = tqdm(total=cfg.total_steps, initial=run.step, disable=not cfg.progress, desc=cfg.algo)
    while run.step < cfg.total_steps and not run.stopped:
        rollout(run)
        update(run)
        last = run.step == cfg.total_steps
        if cfg.eval_episodes and ((cfg.eval_every and run.step % cfg.eval_every == 0) or last):
            evaluate_and_keep(run)
        snapshot(run)
        last = last or run.stopped
        if run.step % cfg.log_every == 0 or last:
            sps = (run.step - step_start) / max(time.perf_counter() - t_start, 1e-9)
            run.log.write(run.dir / "progress.csv", step=run.step, episodes=run.episode["count"], sps=sps,
                          labels=len(run.labels), wall_s=run.clock())
        if (cfg.checkpoint_every and run.step % cfg.checkpoint_every == 0) or last:
            checkpoint(run)
        bar.update(1)
    bar.close()
    return run.dir


def rollout(run):
    """One step of every agent: act (expert during warm-up, else the actor), label, store, advance."""
    cfg, env = run.cfg, run.env
    low, high = _action_bounds(env)
    warmup = run.step < cfg.learning_starts
    label_due = run.expert is not None and run.algo.imitation and run.step % cfg.label_every == 0
    expert_acts = warmup and run.expert is not None and cfg.warmup_with_expert
    label = np.asarray(run.expert(run.obs), dtype=np.float32) if (label_due or expert_acts) else None
    if label_due:
        run.labels.add(run.obs, label)
    if expert_acts:
        action = label
    elif not warmup or cfg.pretrain_steps:
        action = run.learner.act(run.obs, explore=True)
    else:
        action = run.rng.uniform(low, high, size=(env.n_agents, env.act_dim))
    action = np.clip(action, low, high).astype(np.float32)  # float32: exactly what the buffer stores
    transition = {"obs": run.obs, "act": action}
    if "state" in run.buffer.shapes:
        transition["state"] = env.state()
    next_obs, reward, done, _ = env.step_batch(action)
    if "state" in run.buffer.shapes:
        transition["next_state"] = env.state()
    stored = reward if run.potential is None else run.potential.shape(reward, run.obs, next_obs, done)
    run.buffer.add(**transition, rew=stored, next_obs=next_obs, done=float(done))
    ep = run.episode
    ep["t"] += 1
    ep["return"] += reward
    run.obs = next_obs
    if done:
        run.log.add(episode_return=float(ep["return"].mean()))
        ep.update(seed=int(run.rng.integers(2**31)), t=0, count=ep["count"] + 1, **{"return": np.zeros(env.n_agents)})
        run.obs = env.reset_batch(seed=ep["seed"])
    run.step += 1


def update(run):
    """After learning_starts, every update_every steps: updates_per_round gradient steps."""
    cfg, learner = run.cfg, run.learner
    if run.step <= cfg.learning_starts or run.step % cfg.update_every:
        return
    if learner.reward_weight is None:  # fixed once, from the demonstrations and the warm-up data
        learner.fit_reward_norm(run.buffer.data["rew"][:len(run.buffer)])
    beta = anneal(cfg.imitation_schedule, cfg.imitation_start, cfg.imitation_end, run.step, cfg.imitation_anneal_steps)
    use_q = run.step > q_term_start(cfg)
    handover = handover_share(cfg, run.step)
    for _ in range(cfg.updates_per_round):
        batch = run.buffer.sample(cfg.batch_size, cfg.n_step, cfg.gamma)
        imitation = run.labels.sample(cfg.batch_size) if run.algo.imitation else None
        run.log.add(beta=beta, **learner.update(batch, imitation, beta, use_q=use_q, handover=handover))


def q_term_start(cfg):
    """The environment step after which an imitating algorithm's actor follows the Q term (critic warm-up done)."""
    return cfg.learning_starts + cfg.critic_warmup_steps


def handover_share(cfg, step):
    """Share of the critic_actions columns' imitation handed to the critic at environment step ``step``: 0 until
    the Q term starts (q_term_start), then rising linearly to 1 over critic_handover_steps."""
    q_from = q_term_start(cfg)
    if not cfg.critic_handover_steps:
        return 1.0 if step > q_from else 0.0
    return min(1.0, max(0.0, (step - q_from) / cfg.critic_handover_steps))


# ---- evaluation ----------------------------------------------------------------------------
def evaluate(learner, env, days, gamma=1.0, potential=None):
    """Deterministic episodes on ``days`` (a list; None = the env's draw with a fixed seed).

    Returns (mean over days and agents of the undiscounted return, critic fit dict with q_bias and
    q_corr of the first critic's Q against the return-to-go, NaN without a fitted critic).  With a
    shaping ``potential`` the critic is compared with the shaped return-to-go it learns; the first
    number stays the environment's return.
    """
    returns, qs, gs = [], [], []
    critic = getattr(learner, "critic", None) is not None and getattr(learner, "reward_weight", None) is not None
    for k, day in enumerate(days):
        obs, done, rows = env.reset_batch(seed=10**6 + k, day=day), False, []
        while not done:
            action = learner.act(obs, explore=False)
            state = env.state() if critic and learner.algo.needs_state else None
            next_obs, reward, done, _ = env.step_batch(action)
            rows.append((obs, action, state, np.asarray(reward, dtype=float), next_obs))
            obs = next_obs
        rewards = np.stack([r[3] for r in rows])
        returns.append(float(rewards.sum(0).mean()))
        if critic:
            if potential is not None:
                done = np.zeros(len(rows))
                done[-1] = 1.0
                rewards = potential.shape(rewards, np.stack([r[0] for r in rows]), np.stack([r[4] for r in rows]),
                                          done)
            scaled = learner.cfg.reward_scale * learner.reward_weight.numpy() * rewards
            gs.append(_return_to_go(scaled, gamma))
            states = None if rows[0][2] is None else np.stack([r[2] for r in rows])
            qs.append(learner.q_values(np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]), states))
    return float(np.mean(returns)), _critic_fit(qs, gs)


def _return_to_go(rewards, gamma):
    out, acc = np.zeros_like(rewards), np.zeros(rewards.shape[1])
    for t in range(len(rewards) - 1, -1, -1):
        acc = rewards[t] + gamma * acc
        out[t] = acc
    return out


def _critic_fit(qs, gs):
    if not qs:
        return {"q_bias": float("nan"), "q_corr": float("nan")}
    q, g = np.concatenate(qs).ravel(), np.concatenate(gs).ravel()
    corr = float(np.corrcoef(q, g)[0, 1]) if q.std() > 0 and g.std() > 0 else float("nan")
    return {"q_bias": float(np.mean(q - g) / max(np.mean(np.abs(g)), 1e-12)), "q_corr": corr}


def evaluation_days(env, episodes):
    """``episodes`` days spread evenly over the evaluation environment's pool (None each without a pool)."""
    pool = getattr(env, "day_pool", None)
    if not episodes or not pool:
        return [None] * episodes
    return [pool[int((k + 0.5) * len(pool) / episodes)] for k in range(min(episodes, len(pool)))]


def evaluate_and_keep(run):
    """Evaluate; log; keep the actor if it is the best so far; snapshot; count toward early stopping."""
    cfg = run.cfg
    eval_return, fit = evaluate(run.learner, run.eval_env, run.eval_days, cfg.gamma, run.potential)
    run.log.add(eval_return=eval_return, **fit)
    if not cfg.keep_best:
        return
    if eval_return > run.best["eval_return"]:  # ties keep the earlier actor
        run.best.update(eval_return=float(eval_return), step=int(run.step), stale=0)
        _write_actor(run.dir / "actor.pt", run.learner, run.step, run.env)
        (run.dir / "best.json").write_text(json.dumps({k: run.best[k] for k in ("eval_return", "step")}))
    else:
        run.best["stale"] += 1
        run.stopped = bool(cfg.early_stop_patience) and run.best["stale"] >= cfg.early_stop_patience


# ---- checkpoints ---------------------------------------------------------------------------
def snapshot(run):
    """snapshots/actor_<step>.pt every snapshot_every steps (step 0: the pretrained actor)."""
    if run.cfg.snapshot_every and run.step % run.cfg.snapshot_every == 0:
        (run.dir / "snapshots").mkdir(exist_ok=True)
        _write_actor(run.dir / "snapshots" / f"actor_{run.step}.pt", run.learner, run.step, run.env)


def checkpoint(run):
    """Checkpoint for resuming, plus the latest actor for the co-simulation policy (actor.pt, or
    actor_last.pt when keep_best leaves actor.pt to the best evaluation)."""
    finished = run.step >= run.cfg.total_steps or run.stopped
    loop = {"step": run.step, "episode": {**run.episode, "return": torch.as_tensor(run.episode["return"])},
            "log": run.log.state_dict(), "best": run.best, "wall_s": float(run.clock()), "finished": finished}
    save_checkpoint(run.dir, run.learner, run.buffer, run.labels, run.rng, loop)
    _write_actor(run.dir / ("actor_last.pt" if run.cfg.keep_best else "actor.pt"), run.learner, run.step, run.env)


def _load(run):
    """Restore the checkpoint in run.dir into ``run`` (learner, buffer, labels, RNGs in place)."""
    loop = load_checkpoint(run.dir, run.learner, run.buffer, run.labels, run.rng)
    run.step = loop["step"]
    run.episode = {**loop["episode"], "return": loop["episode"]["return"].numpy().copy()}
    run.log = LogAccumulator(loop["log"]["sums"], loop["log"]["counts"])
    run.best = {"stale": 0, **loop.get("best", {"eval_return": -float("inf"), "step": -1})}
    run.clock.before = float(loop.get("wall_s", float("nan")))


def _write_actor(path, learner, step, env):
    fields = getattr(env, "obs_fields", OBS_FIELDS if env.obs_dim == len(OBS_FIELDS) else ())
    save_actor(path, learner.actor, algo=learner.cfg.algo, step=step, obs_fields=fields)


def _action_names(env):
    """The action columns of ``env`` (its fleet's layout), or None for an environment without a fleet."""
    fleet = getattr(env, "fleet", None)
    return None if fleet is None else list(fleet.action_fields)


def _action_bounds(env):
    """(low, high) float32 arrays (A,): the environment's own if it has them, else the interface's."""
    from simulators.prosumer.interface import ACTION_HIGH, ACTION_LOW

    low, high = getattr(env, "action_low", None), getattr(env, "action_high", None)
    low, high = (ACTION_LOW, ACTION_HIGH) if low is None else (low, high)
    return np.asarray(low, dtype=np.float32), np.asarray(high, dtype=np.float32)


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


# ---- command line ----------------------------------------------------------------------
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

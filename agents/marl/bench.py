"""Time MARL on this CPU: environment throughput, critic forward+backward(+Adam), update, acting.

    python -m agents.marl.bench --agents 32 100 --batch 256 --threads 2

Environment throughput is measured on the scenario with that many prosumers: 32 -> the default
IEEE 33-bus scenario; more -> the SimBench feeder's generated prosumers (118), random actions,
exact AC power flow; it counts agent-steps (one prosumer moved by 15 minutes) per second.

Prints the minimum over repeats in ms (the minimum, because these machines are shared and
other people's jobs only ever add time).  Observation/action widths are the interface's.
"""

import argparse
import time

import numpy as np
import torch

from agents.marl.algorithms import ALGORITHMS, Learner
from agents.marl.critics import CRITICS
from agents.marl.train import TrainConfig
from simulators.prosumer.interface import ACTION_FIELDS, OBS_FIELDS


def best_ms(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000.0 * min(times)


def bench_critic(kind, n, batch, repeats):
    """(fwd+bwd, fwd+bwd+Adam) ms of one critic of ``kind`` for n agents."""
    f, a = len(OBS_FIELDS), len(ACTION_FIELDS)
    cfg = TrainConfig()
    kw = dict(embed_dim=cfg.embed_dim, n_heads=cfg.n_heads) if "attn" in kind else dict(hidden=(cfg.critic_hidden,) * 2)
    state_dim = n * f + n if kind == "mlp" else 0
    critic = CRITICS[kind](n, f, a, state_dim, **kw)
    opt = torch.optim.Adam(critic.parameters())
    obs, act = torch.randn(batch, n, f), torch.rand(batch, n, a)
    state = torch.randn(batch, state_dim) if state_dim else None

    def fwd_bwd():
        opt.zero_grad()
        critic(obs, act, state).pow(2).mean().backward()

    def with_adam():
        fwd_bwd()
        opt.step()

    return best_ms(fwd_bwd, repeats), best_ms(with_adam, repeats)


def bench_update(algo, n, batch, repeats):
    """ms of one Learner.update averaged over a critic-only and a critic+actor step."""
    f, a = len(OBS_FIELDS), len(ACTION_FIELDS)
    cfg = TrainConfig(batch_size=batch)
    learner = Learner(ALGORITHMS[algo], cfg, n, f, a, n * f + n)
    b = {"obs": torch.randn(batch, n, f), "act": torch.rand(batch, n, a), "rew": torch.randn(batch, n),
         "next_obs": torch.randn(batch, n, f), "done": torch.zeros(batch),
         "state": torch.randn(batch, n * f + n), "next_state": torch.randn(batch, n * f + n)}
    imitation = (b["obs"], b["act"])
    return best_ms(lambda: (learner.update(b, imitation, 0.5), learner.update(b, imitation, 0.5)), repeats) / 2


def bench_act(n, repeats):
    """ms to act for all n agents at once (batch 1, deterministic)."""
    learner = Learner(ALGORITHMS["imitative_diffattn"], TrainConfig(), n, len(OBS_FIELDS), len(ACTION_FIELDS))
    obs = np.random.default_rng(0).normal(size=(n, len(OBS_FIELDS))).astype(np.float32)
    return best_ms(lambda: learner.act(obs, explore=False), repeats * 20, warmup=20)


def bench_env(n, days=2, env_cfg=None):
    """(agents, agent-steps per second wall, per CPU second) of P2PEnv with random actions for ``days``
    episodes; ``env_cfg`` (an EnvConfig) replaces the default choice of scenario by ``n``."""
    from agents.env import EnvConfig, P2PEnv

    if env_cfg is None:
        cfg = EnvConfig() if n <= 32 else EnvConfig(network="simbench_lv_rural3", specs="generate")
        env_cfg = EnvConfig(**{**cfg.__dict__, "max_prosumers": n})
    env = P2PEnv(env_cfg)
    rng = np.random.default_rng(0)
    space = env.action_space(env.possible_agents[0])
    low, high = np.array(space.low), np.array(space.high)
    steps, t, c = 0, time.perf_counter(), time.thread_time()
    for _ in range(days):
        env.reset_batch()
        done = False
        while not done:
            _, _, done, _ = env.step_batch(rng.uniform(low, high, (env.n_agents, env.act_dim)))
            steps += 1
    agent_steps = steps * env.n_agents
    return env.n_agents, agent_steps / (time.perf_counter() - t), agent_steps / (time.thread_time() - c)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[32, 100])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for n in args.agents:
        agents, rate, _ = bench_env(n)
        print(f"agents={agents} environment {rate:10.0f} agent-steps/s ({rate / agents:.0f} steps/s)")
        for kind in sorted(CRITICS):
            fb, adam = bench_critic(kind, n, args.batch, args.repeats)
            print(f"agents={n} batch={args.batch} critic={kind:13s} fwd+bwd {fb:8.1f} ms   +Adam {adam:8.1f} ms")
        for algo in ("imitative_diffattn", "matd3"):
            ms = bench_update(algo, n, args.batch, args.repeats)
            print(f"agents={n} batch={args.batch} {algo} update {ms:8.1f} ms")
        act_ms = bench_act(n, args.repeats)
        print(f"agents={n} act (all agents, batch 1) {act_ms:.3f} ms = {1000 * act_ms / n:.2f} us per agent step")


if __name__ == "__main__":
    main()

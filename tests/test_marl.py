"""Imitative expert MARL: attention critics, W2 imitation, batched actors, training loop, resume.

Tiny sizes throughout; the training tests use ``ToyEnv``, a synthetic multi-agent task whose
optimal action is a known function of the observation (so an expert is exact).
"""

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from agents.marl.algorithms import ALGORITHMS
from agents.marl.attention import (
    DifferentialMultiHeadAttention,
    SoftmaxMultiHeadAttention,
    lambda_init,
)
from agents.marl.buffer import Demonstrations, ReplayBuffer
from agents.marl.critics import CRITICS, AttentionCritic, MLPCritic
from agents.marl.losses import anneal, deterministic_imitation, wasserstein_imitation
from agents.marl.networks import Actor, AgentMLP
from agents.marl.policy import ActorPolicy, load_actor, save_actor
from agents.marl.config import validate
from agents.marl.train import TrainConfig, train
from simulators.prosumer.interface import (
    ACTION_FIELDS,
    ACTION_HIGH,
    ACTION_LOW,
    OBS_FIELDS,
)
from simulators.prosumer.policies import PolicyContext, resolve_policy
from simulators.validation import ConfigError

torch.set_num_threads(1)


class ToyEnv:
    """N agents; agent i is paid -||a_i - a*(o_i)||² - c (mean_j a_j0 - mean_j a*_j0)², a* = tanh(o W).

    Observations are fresh uniform draws each step from the episode's seeded generator, so the
    environment is deterministic given the reset seed and the actions (as P2PEnv is).
    """

    def __init__(self, n=3, f=4, a=2, horizon=30, coupling=0.5):
        self.n_agents, self.obs_dim, self.act_dim, self.horizon, self.coupling = n, f, a, horizon, coupling
        self.w = np.random.default_rng(123).normal(size=(f, a)) / math.sqrt(f)
        self.action_low, self.action_high = [-1.0] * a, [1.0] * a
        self.obs_fields = tuple(f"x{i}" for i in range(f))

    def reset_batch(self, seed=None, day=None):
        self.rng = np.random.default_rng(seed)
        self.t = 0
        self.obs = self.rng.uniform(-1, 1, (self.n_agents, self.obs_dim)).astype(np.float32)
        return self.obs

    def expert(self, obs):
        return np.tanh(np.asarray(obs) @ self.w)

    def step_batch(self, actions):
        target = self.expert(self.obs)
        reward = -((actions - target) ** 2).sum(1) - self.coupling * (actions[:, 0].mean() - target[:, 0].mean()) ** 2
        self.t += 1
        self.obs = self.rng.uniform(-1, 1, (self.n_agents, self.obs_dim)).astype(np.float32)
        return self.obs, reward, self.t >= self.horizon, {}

    def state(self):
        return self.obs.ravel()


def toy_config(tmp_path, **kw):
    base = dict(scenario="toy", total_steps=300, learning_starts=60, batch_size=32, buffer_size=5000,
                log_every=50, checkpoint_every=0, eval_episodes=0, actor_hidden=16, critic_hidden=32,
                embed_dim=16, n_heads=2, imitation_anneal_steps=1000, threads=1, progress=False,
                results_dir=str(tmp_path), gamma=0.5, reward_norm="none")
    base.update(kw)
    return TrainConfig(**base)


def run_toy(cfg, env_kw=None, **kw):
    env_kw = env_kw or {}
    env = ToyEnv(**env_kw)
    return train(cfg, make_env=lambda c, evaluation: ToyEnv(**env_kw), expert_fn=env.expert, **kw)


def progress(run_dir):
    import csv

    with open(run_dir / "progress.csv") as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


# ---- attention critic ------------------------------------------------------------------
@pytest.mark.parametrize("attention", ["diff", "softmax"])
def test_attention_critic_shapes_and_no_self_attention(attention):
    torch.manual_seed(0)
    b, n, f, a = 5, 4, 3, 2
    critic = AttentionCritic(n, f, a, embed_dim=16, n_heads=2, attention=attention)
    obs, act = torch.randn(b, n, f), torch.randn(b, n, a, requires_grad=True)
    q, weights = critic(obs, act, need_weights=True)
    assert q.shape == (b, n) and weights.shape == (b, 2, n, n)
    assert torch.all(weights.diagonal(dim1=-2, dim2=-1) == 0)
    assert torch.all(weights.abs().sum(-1) > 0)
    # attention branch: agent i's output has zero gradient w.r.t. its own action, non-zero w.r.t. others'
    e = critic.sa_encoder(torch.cat([obs, act], -1))
    x, _ = critic.attention(critic.s_encoder(obs), e, e)
    for i in range(n):
        (grad,) = torch.autograd.grad(x[:, i].sum(), act, retain_graph=True)
        assert torch.all(grad[:, i] == 0)
        assert torch.all(grad[:, [j for j in range(n) if j != i]].abs().sum(-1) > 0)
    # with act_self, Q_i reads its own action only from act_self: the buffer's own action has no effect
    act_self = torch.randn(b, n, a)
    (grad,) = torch.autograd.grad(critic(obs, act, act_self=act_self)[:, 1].sum(), act)
    assert torch.all(grad[:, 1] == 0) and grad[:, 0].abs().sum() > 0


@pytest.mark.parametrize("attention", ["diff", "softmax"])
def test_attention_critic_is_permutation_equivariant(attention):
    torch.manual_seed(1)
    critic = AttentionCritic(5, 3, 2, embed_dim=16, n_heads=2, attention=attention)
    obs, act = torch.randn(7, 5, 3), torch.randn(7, 5, 2)
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(critic(obs[:, perm], act[:, perm]), critic(obs, act)[:, perm])


@pytest.mark.parametrize("kind", sorted(CRITICS))
def test_every_critic_gives_q_per_agent_and_reads_own_action_from_act_self(kind):
    torch.manual_seed(9)
    b, n, f, a, s = 4, 3, 2, 2, 5
    kw = dict(embed_dim=8, n_heads=2) if "attn" in kind else dict(hidden=(8, 8))
    critic = CRITICS[kind](n, f, a, s if kind == "mlp" else 0, **kw)
    obs, act, state = torch.randn(b, n, f), torch.randn(b, n, a, requires_grad=True), torch.randn(b, s)
    assert critic(obs, act, state).shape == (b, n)
    q = critic(obs, act, state, act_self=torch.randn(b, n, a))
    for i in range(n):
        (grad,) = torch.autograd.grad(q[:, i].sum(), act, retain_graph=True, allow_unused=True)
        assert grad is None or torch.all(grad[:, i] == 0)  # None: the local critic ignores act entirely


def test_mlp_critic_act_self_equals_swapping_one_action():
    torch.manual_seed(2)
    critic = MLPCritic(3, 2, 2, state_dim=5, hidden=(16, 16))
    obs, act, own, state = torch.randn(4, 3, 2), torch.randn(4, 3, 2), torch.randn(4, 3, 2), torch.randn(4, 5)
    q = critic(obs, act, state, act_self=own)
    for i in range(3):
        swapped = act.clone()
        swapped[:, i] = own[:, i]
        torch.testing.assert_close(q[:, i], critic(obs, swapped, state)[:, i])


# ---- differential attention ------------------------------------------------------------
def test_lambda_reparameterization_and_init_by_depth():
    assert lambda_init(0) == pytest.approx(0.2)
    assert lambda_init(1) == pytest.approx(0.8 - 0.6 * math.exp(-0.3))
    assert lambda_init(12) == pytest.approx(0.8 - 0.6 * math.exp(-3.6))
    attn = DifferentialMultiHeadAttention(16, 2, depth=3)
    assert attn.lambda_init == pytest.approx(0.8 - 0.6 * math.exp(-0.9))
    with torch.no_grad():
        for p, v in zip((attn.lambda_q1, attn.lambda_k1, attn.lambda_q2, attn.lambda_k2), (0.3, 0.5, -0.2, 0.4)):
            p.fill_(v)
    d = attn.head_dim
    expected = math.exp(d * 0.3 * 0.5) - math.exp(d * -0.2 * 0.4) + lambda_init(3)
    torch.testing.assert_close(attn.lambda_full(), torch.full((2,), expected))


def test_differential_attention_matches_per_head_reference():
    torch.manual_seed(3)
    e, h, n = 16, 2, 4
    attn = DifferentialMultiHeadAttention(e, h, depth=1)
    x_q, x_kv = torch.randn(3, n, e), torch.randn(3, n, e)
    out, _ = attn(x_q, x_kv, x_kv)
    d, lam = attn.head_dim, attn.lambda_full()
    q, k, v = attn.q_proj(x_q), attn.k_proj(x_kv), attn.v_proj(x_kv)
    heads = []
    for i in range(h):  # the formula, one head at a time, no tricks
        q1, q2 = q[..., (2 * i) * d:(2 * i + 1) * d], q[..., (2 * i + 1) * d:(2 * i + 2) * d]
        k1, k2 = k[..., (2 * i) * d:(2 * i + 1) * d], k[..., (2 * i + 1) * d:(2 * i + 2) * d]
        s1, s2 = q1 @ k1.transpose(-1, -2) / math.sqrt(d), q2 @ k2.transpose(-1, -2) / math.sqrt(d)
        eye = torch.eye(n, dtype=torch.bool)
        p1, p2 = torch.softmax(s1.masked_fill(eye, -math.inf), -1), torch.softmax(s2.masked_fill(eye, -math.inf), -1)
        a = p1 - lam[i] * p2
        y = a @ v[..., i * 2 * d:(i + 1) * 2 * d]
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + 1e-5) * attn.head_norm.weight
        heads.append(y * (1 - attn.lambda_init))
    torch.testing.assert_close(out, attn.out_proj(torch.cat(heads, -1)))


@pytest.mark.parametrize("cls", [DifferentialMultiHeadAttention, SoftmaxMultiHeadAttention])
def test_fused_attention_equals_explicit_maps(cls):
    torch.manual_seed(8)
    attn = cls(16, 2)
    x = torch.randn(3, 6, 16)
    fused, none = attn(x, x, x)
    explicit, weights = attn(x, x, x, need_weights=True)
    assert none is None and weights.shape == (3, 2, 6, 6)
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)


# ---- Wasserstein imitation -------------------------------------------------------------
def test_wasserstein_equals_closed_form_and_vanishes_only_at_the_expert():
    torch.manual_seed(4)
    mu, sigma, a_e = torch.randn(6, 3), torch.rand(6, 3), torch.randn(6, 3)
    w2 = wasserstein_imitation(mu, sigma, a_e)
    # general Gaussian formula with Σ2 = 0: ||μ1 - μ2||² + tr Σ1
    trace_cov = torch.diag_embed(sigma ** 2).diagonal(dim1=-2, dim2=-1).sum(-1)
    torch.testing.assert_close(w2, ((mu - a_e) ** 2).sum(-1) + trace_cov)
    # a Dirac target: W2² = E||X - a_E||², checked by Monte Carlo
    x = mu[0] + sigma[0] * torch.randn(200_000, 3)
    assert ((x - a_e[0]) ** 2).sum(-1).mean().item() == pytest.approx(w2[0].item(), rel=0.02)
    zero = torch.zeros(2, 3)
    assert torch.all(wasserstein_imitation(a_e[:2], zero, a_e[:2]) == 0)
    assert torch.all(wasserstein_imitation(a_e[:2] + 0.01, zero, a_e[:2]) > 0)
    assert torch.all(wasserstein_imitation(a_e[:2], zero + 0.01, a_e[:2]) > 0)
    torch.testing.assert_close(deterministic_imitation(mu, a_e), wasserstein_imitation(mu, torch.zeros_like(mu), a_e))


def test_annealing_schedules():
    assert anneal("linear", 1.0, 0.1, 0, 100) == 1.0
    assert anneal("linear", 1.0, 0.1, 50, 100) == pytest.approx(0.55)
    assert anneal("cosine", 1.0, 0.1, 200, 100) == pytest.approx(0.1)
    assert anneal("constant", 0.7, 0.1, 50, 100) == 0.7
    assert anneal("exponential", 1.0, 0.0, 20, 100) < anneal("linear", 1.0, 0.0, 20, 100)


# ---- batched actors --------------------------------------------------------------------
def test_batched_mlp_equals_separate_mlps():
    torch.manual_seed(5)
    n, f, out = 4, 3, 2
    batched = AgentMLP(n, f, out, hidden=(8, 8))
    separate = []
    for i in range(n):
        mlp = nn.Sequential(nn.Linear(f, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, out))
        with torch.no_grad():
            for lin, layer in zip(mlp[::2], batched.layers):
                lin.weight.copy_(layer.weight[i].T)
                lin.bias.copy_(layer.bias[i])
        separate.append(mlp)
    x = torch.randn(6, n, f)
    expected = torch.stack([separate[i](x[:, i]) for i in range(n)], dim=1)
    torch.testing.assert_close(batched(x), expected)
    ids = torch.tensor([2, 0])
    torch.testing.assert_close(batched(x[:, ids], ids), expected[:, ids])


def test_actor_bounds_and_deterministic_imitation():
    torch.manual_seed(6)
    for head in ("gaussian", "deterministic"):
        actor = Actor(3, 5, 6, hidden=(8,), head=head, shared=True)
        obs = torch.randn(10, 3, 5) * 10
        act, _ = actor.sample(obs)
        low, high = torch.tensor(ACTION_LOW), torch.tensor(ACTION_HIGH)
        assert torch.all(act >= low) and torch.all(act <= high)
    a_e = actor.mean_action(obs).detach()
    assert torch.allclose(actor.imitation_loss(obs, a_e), torch.zeros(10, 3), atol=1e-10)


def test_shared_actor_learns_different_actions_for_the_same_observation():
    """One network for all agents (the evaluation's recipe for demo-fed methods) still tells agents apart: its
    agent-id embedding lets three agents that observe the very same thing imitate three different experts."""
    torch.manual_seed(3)
    n, f = 3, 4
    obs = torch.randn(64, 1, f).expand(64, n, f).contiguous()  # every agent observes the same
    targets = torch.tensor([-0.6, 0.0, 0.6]).view(1, n, 1).expand(64, n, 6).contiguous()  # agent 0, 1, 2
    low, high = torch.tensor(ACTION_LOW, dtype=torch.float32), torch.tensor(ACTION_HIGH, dtype=torch.float32)
    targets = targets.clamp(low, high)  # action units; dimensions bounded below by 0 give agents 0 and 1 the same
    actor = Actor(n, f, 6, hidden=(32,), shared=True)
    opt = torch.optim.Adam(actor.parameters(), lr=1e-2)
    for _ in range(400):
        loss = actor.imitation_loss(obs, targets, spread=False).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    act = actor.mean_action(obs).detach()
    torch.testing.assert_close(act, targets, atol=0.03, rtol=0.0)
    one = actor.mean_action(obs[:, 2:3], torch.tensor([2])).detach()  # the co-simulation asks one agent alone
    torch.testing.assert_close(one, act[:, 2:3])


# ---- shape errors ----------------------------------------------------------------------
def test_shape_errors_name_expected_and_actual():
    critic = AttentionCritic(4, 3, 2, embed_dim=16, n_heads=2)
    with pytest.raises(ValueError, match=r"obs: expected shape \(\*, 4, 3\), got \(5, 4, 2\)"):
        critic(torch.randn(5, 4, 2), torch.randn(5, 4, 2))
    with pytest.raises(ValueError, match=r"act: expected shape \(5, 4, 2\), got \(5, 3, 2\)"):
        critic(torch.randn(5, 4, 3), torch.randn(5, 3, 2))
    with pytest.raises(ValueError, match=r"key: expected shape \(2, 3, 16\), got \(2, 4, 16\)"):
        SoftmaxMultiHeadAttention(16, 2)(torch.randn(2, 3, 16), torch.randn(2, 4, 16), torch.randn(2, 3, 16))
    with pytest.raises(ValueError, match="embed_dim: expected a multiple of 2\\*n_heads = 8, got 12"):
        DifferentialMultiHeadAttention(12, 4)
    with pytest.raises(ValueError, match=r"rew: expected shape \(4,\), got \(3,\)"):
        ReplayBuffer(10, 4, 3, 2).add(obs=np.zeros((4, 3)), act=np.zeros((4, 2)), rew=np.zeros(3),
                                      next_obs=np.zeros((4, 3)), done=0.0)


# ---- training --------------------------------------------------------------------------
def test_training_lowers_critic_and_imitation_loss(tmp_path):
    run_dir = run_toy(toy_config(tmp_path, total_steps=900, imitation_end=1.0))
    rows = progress(run_dir)
    critic = [r["critic_loss"] for r in rows if not math.isnan(r["critic_loss"])]
    imitation = [r["imitation_loss"] for r in rows if not math.isnan(r["imitation_loss"])]
    assert critic[-1] < 0.5 * critic[0]
    assert imitation[-1] < 0.5 * imitation[0]
    assert (run_dir / "config.json").is_file() and (run_dir / "actor.pt").is_file()


@pytest.mark.parametrize("algo", sorted(set(ALGORITHMS) - {"imitative_diffattn"}))
def test_every_algorithm_runs(tmp_path, algo):
    run_dir = run_toy(toy_config(tmp_path, algo=algo, total_steps=100, learning_starts=40, log_every=100,
                                 eval_episodes=1))
    row = progress(run_dir)[-1]
    key = "critic_loss" if ALGORITHMS[algo].rl else "imitation_loss"
    assert math.isfinite(row[key]) and math.isfinite(row["actor_loss"])


def test_behaviour_cloning_from_demonstrations(tmp_path):
    env = ToyEnv()
    obs = np.random.default_rng(0).uniform(-1, 1, (400, env.n_agents, env.obs_dim)).astype(np.float32)
    np.savez(tmp_path / "demos.npz", obs=obs, actions=env.expert(obs))
    cfg = toy_config(tmp_path, algo="bc", demos=str(tmp_path / "demos.npz"), total_steps=400, learning_starts=0,
                     log_every=100, actor_lr=3e-3)
    run_dir = train(cfg, make_env=lambda c, evaluation: ToyEnv())
    rows = progress(run_dir)
    assert rows[-1]["imitation_loss"] < 0.3 * rows[0]["imitation_loss"]
    np.savez(tmp_path / "bad.npz", obs=obs[:, :2], actions=env.expert(obs)[:, :2])
    with pytest.raises(ConfigError, match=r"demos.obs: expected shape \(T, 3, 4\), got \(400, 2, 4\)"):
        Demonstrations(tmp_path / "bad.npz", 3, 4, 2)


def toy_demos(path, env, days=4, expert=None):
    """Expert episodes of the toy environment saved as write_demonstrations does (obs, actions, reward, day, step);
    ``expert`` (default env.expert) acts."""
    rec = {k: [] for k in ("obs", "actions", "reward", "day", "step")}
    expert = expert or env.expert
    for d in range(days):
        obs, done, k = env.reset_batch(seed=500 + d), False, 0
        while not done:
            act = expert(obs).astype(np.float32)
            rec["obs"].append(obs)
            rec["actions"].append(act)
            obs, reward, done, _ = env.step_batch(act)
            rec["reward"].append(reward)
            rec["day"].append(d)
            rec["step"].append(k)
            k += 1
    np.savez(path, **{k: np.asarray(v) for k, v in rec.items()})
    return path


def test_demonstration_transitions_chain_within_episodes(tmp_path):
    env = ToyEnv(horizon=5)
    demos = Demonstrations(toy_demos(tmp_path / "d.npz", env, days=3), 3, 4, 2)
    tr = demos.transitions()
    assert tr["done"].tolist() == [0, 0, 0, 0, 1] * 3
    np.testing.assert_array_equal(tr["next_obs"][:4], tr["obs"][1:5])  # within an episode: the next row
    assert not np.array_equal(tr["next_obs"][4], tr["obs"][5])           # never across episodes
    np.savez(tmp_path / "bare.npz", obs=tr["obs"], actions=tr["act"])
    with pytest.raises(ConfigError, match=r"demo_replay: .* lacks arrays \['day', 'reward', 'step'\]"):
        Demonstrations(tmp_path / "bare.npz", 3, 4, 2).transitions()


def test_prefilled_transitions_are_never_overwritten():
    buf = ReplayBuffer(6, 1, 1, 1)
    row = lambda x: dict(obs=[[x]], act=[[x]], rew=[x], next_obs=[[x]], done=0.0)
    buf.prefill(**{k: np.stack([np.asarray(row(x)[k], np.float32) for x in (-1, -2)]) for k in buf.shapes})
    for x in range(1, 8):
        buf.add(**row(x))
    # slots 0-1 keep the prefill; 2-5 hold the last four added (4 is overwritten by 8 - ... in ring order)
    assert sorted(buf.data["obs"][:, 0, 0].tolist()) == [-2, -1, 4, 5, 6, 7]
    assert buf.recent("obs", 4)[:, 0, 0].tolist() == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="recent: asked for 5 transitions, buffer holds 4 added ones"):
        buf.recent("obs", 5)
    clone = ReplayBuffer(6, 1, 1, 1)
    clone.load_state_dict(buf.state_dict())
    clone.add(**row(8))
    assert sorted(clone.data["obs"][:, 0, 0].tolist()) == [-2, -1, 5, 6, 7, 8]


def test_pretraining_on_demonstrations_with_demo_replay(tmp_path):
    env = ToyEnv()
    demos = str(toy_demos(tmp_path / "demos.npz", env, days=10))
    cfg = toy_config(tmp_path, demos=demos, demo_replay=True, pretrain_steps=300, critic_pretrain_steps=400,
                     actor_lr=3e-3, total_steps=100, run_name="pre")
    run_dir = train(cfg, make_env=lambda c, evaluation: ToyEnv())
    rows = progress(run_dir)
    assert rows[0]["step"] == 0 and rows[0]["imitation_loss"] < 0.2  # the pretraining row
    assert math.isfinite(rows[0]["critic_mc_loss"])
    cold = train(toy_config(tmp_path, demos=demos, total_steps=100, run_name="cold", actor_lr=3e-3),
                 make_env=lambda c, evaluation: ToyEnv())
    # warm-up acts with the pretrained actor (close to the expert), not uniformly at random
    warm = lambda rows: next(r["episode_return"] for r in rows if math.isfinite(r["episode_return"]))
    assert warm(rows) > 0.5 * warm(progress(cold))
    with np.load(run_dir / "buffer.npz") as f:
        assert int(f["kept"]) == 300 and int(f["size"]) == 400  # 10 episodes x 30 steps kept + 100 collected
    for bad, match in ((dict(algo="matd3"), "demo_replay: algo 'matd3' has a critic that reads the global state"),
                       (dict(algo="bc"), "demo_replay: algo 'bc' has no critic"),
                       (dict(demos=""), "demos: pretrain_steps > 0 and demo_replay learn from demonstrations")):
        with pytest.raises(ConfigError, match=match):
            train(dataclasses.replace(cfg, run_name="bad", **bad), make_env=lambda c, evaluation: ToyEnv())


def test_critic_warmup_keeps_the_q_term_out_of_the_actor_loss(tmp_path):
    cfg = toy_config(tmp_path, total_steps=300, learning_starts=50, critic_warmup_steps=150, log_every=50)
    rows = {int(r["step"]): r for r in progress(run_toy(cfg))}
    for step in (100, 150, 200):  # updates, but the actor only imitates
        assert math.isfinite(rows[step]["critic_loss"]) and math.isfinite(rows[step]["imitation_loss"])
        assert math.isnan(rows[step]["actor_q"])
    assert math.isfinite(rows[300]["actor_q"])


def test_keep_best_keeps_the_actor_of_the_best_evaluation(tmp_path):
    import json

    from agents.marl.train import evaluate

    demos = str(toy_demos(tmp_path / "demos.npz", ToyEnv(), days=10))
    cfg = toy_config(tmp_path, demos=demos, demo_replay=True, pretrain_steps=300, actor_lr=3e-3, total_steps=300,
                     log_every=50, keep_best=True, eval_every=50, eval_episodes=2, eval_days="train")
    run_dir = train(cfg, make_env=lambda c, evaluation: ToyEnv())
    best = json.loads((run_dir / "best.json").read_text())
    returns = [r["eval_return"] for r in progress(run_dir) if math.isfinite(r["eval_return"])]
    assert best["eval_return"] >= max(returns) - 1e-6  # (progress.csv rounds to 6 digits)
    saved = torch.load(run_dir / "actor.pt", weights_only=True)
    assert saved["step"] == best["step"] and torch.load(run_dir / "actor_last.pt", weights_only=True)["step"] == 300
    kept = Actor(**{**saved["spec"], "hidden": tuple(saved["spec"]["hidden"]),
                    "log_std_bounds": tuple(saved["spec"]["log_std_bounds"])})
    kept.load_state_dict(saved["state_dict"])

    class Fixed:  # the kept actor, evaluated again, gives the recorded return
        def act(self, obs, explore):
            with torch.no_grad():
                return kept.mean_action(torch.as_tensor(obs).unsqueeze(0)).squeeze(0).numpy()

    assert evaluate(Fixed(), ToyEnv(), [None, None])[0] == pytest.approx(best["eval_return"], rel=1e-5)
    with pytest.raises(ConfigError, match="keep_best: .* eval_days other than 'test'"):
        train(dataclasses.replace(cfg, eval_days="test", run_name="bad"), make_env=lambda c, evaluation: ToyEnv())


def test_resume_with_demo_replay_continues_identically(tmp_path):
    demos = str(toy_demos(tmp_path / "demos.npz", ToyEnv(), days=3))
    cfg = dict(total_steps=400, learning_starts=50, log_every=100, demos=demos, demo_replay=True, pretrain_steps=20,
               buffer_size=150)  # the buffer wraps: new transitions cycle around the kept ones
    straight = run_toy(toy_config(tmp_path, run_name="straight", **cfg))
    first = run_toy(toy_config(tmp_path, run_name="split", **{**cfg, "total_steps": 215}))
    split = run_toy(toy_config(tmp_path, run_name="split", **cfg), resume=first)
    a = torch.load(straight / "checkpoint.pt", weights_only=True)["learner"]
    b = torch.load(split / "checkpoint.pt", weights_only=True)["learner"]
    for k in a["actor"]:
        assert torch.equal(a["actor"][k], b["actor"][k]), k


def test_bad_training_config_fails_before_running(tmp_path):
    with pytest.raises(ConfigError, match="algo: 'ppo' is not one of"):
        run_toy(toy_config(tmp_path, algo="ppo"))
    with pytest.raises(ConfigError, match=r"gamma: 1.5 outside the allowed range \[0.0, 1.0\]"):
        run_toy(toy_config(tmp_path, gamma=1.5))
    with pytest.raises(ConfigError, match="imitates an expert"):
        train(toy_config(tmp_path, algo="bc"), make_env=lambda c, evaluation: ToyEnv())
    with pytest.raises(ConfigError, match="expert: algo 'dagger' learns from the expert's labels"):
        train(toy_config(tmp_path, algo="dagger", demos="x.npz"), make_env=lambda c, evaluation: ToyEnv())
    assert not any(tmp_path.iterdir())


def test_resume_continues_identically(tmp_path):
    cfg = dict(total_steps=2000, learning_starts=100, update_every=2, log_every=500)
    straight = run_toy(toy_config(tmp_path, run_name="straight", **cfg))
    first = run_toy(toy_config(tmp_path, run_name="split", **{**cfg, "total_steps": 1000}))
    # 1000 is not a multiple of the 30-step episode: the resume replays the open episode
    split = run_toy(toy_config(tmp_path, run_name="split", **cfg), resume=first)
    a = torch.load(straight / "checkpoint.pt", weights_only=True)["learner"]
    b = torch.load(split / "checkpoint.pt", weights_only=True)["learner"]
    for part in ("actor", "critic", "critic_target", "actor_target"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert a["n_updates"] == b["n_updates"] > 0


# ---- the co-simulation policy ----------------------------------------------------------
@pytest.mark.parametrize("shared", [False, True])
def test_actor_policy_rows_do_not_depend_on_grouping(tmp_path, shared):
    torch.manual_seed(7)
    n = 5
    actor = Actor(n, len(OBS_FIELDS), len(ACTION_FIELDS), hidden=(16,), shared=shared)
    save_actor(tmp_path / "actor.pt", actor, obs_fields=OBS_FIELDS)
    policy = resolve_policy("actor")(PolicyContext(specs=[], options={"checkpoint": str(tmp_path)}))
    obs = np.random.default_rng(1).normal(size=(n, len(OBS_FIELDS)))
    grouped = policy.act(obs, np.arange(n))
    single = np.vstack([policy.act(obs[i:i + 1], [i]) for i in range(n)])
    np.testing.assert_allclose(single, grouped, atol=1e-6)
    assert grouped.shape == (n, len(ACTION_FIELDS))
    with pytest.raises(ValueError, match="agent_ids"):
        policy.act(obs[:1], [n])
    with pytest.raises(ConfigError, match="checkpoint"):
        ActorPolicy(PolicyContext(specs=[], options={}))
    # a co-simulation that does not connect the profiles' forecast outputs: named, not acted on
    blind = obs.copy()
    blind[2, OBS_FIELDS.index("pv_fc_day")] = np.nan
    with pytest.raises(ValueError, match=r"agent 2.*'pv_fc_day'.*E_pv_fc_day\[MWh\]"):
        policy.act(blind, np.arange(n))


# ---- the critic: n-step targets, per-agent reward scale, pretraining until settled ------------
def test_n_step_sampling_stops_at_the_episode_end_and_the_newest_transition():
    buf = ReplayBuffer(10, 1, 1, 1)
    for r, done in [(1, 0), (2, 0), (3, 0), (4, 1), (10, 0), (20, 0)]:  # a finished episode, then an open one
        buf.add(obs=[[r]], act=[[0]], rew=[r], next_obs=[[r + 0.5]], done=float(done))
    b = buf.sample(300, n_step=3, gamma=0.5)
    expected = {1: (1 + 0.5 * 2 + 0.25 * 3, 3.5, 0.125), 2: (2 + 1.5 + 1, 4.5, 0.0), 3: (3 + 2, 4.5, 0.0),
                4: (4, 4.5, 0.0), 10: (10 + 10, 20.5, 0.25), 20: (20, 20.5, 0.5)}
    seen = set()
    for start, rew, nxt, disc in zip(b["obs"][:, 0, 0].tolist(), b["rew"][:, 0].tolist(),
                                     b["next_obs"][:, 0, 0].tolist(), b["discount"].tolist()):
        assert (rew, nxt, disc) == pytest.approx(expected[start]), start
        seen.add(start)
    assert seen == set(expected)
    one = buf.sample(50, n_step=1, gamma=0.5)
    assert torch.equal(one["rew"][:, 0], one["obs"][:, 0, 0]) and set(one["discount"].tolist()) <= {0.0, 0.5}


def test_reward_norm_puts_every_agent_on_one_scale():
    from agents.marl.algorithms import Learner

    bounds = dict(action_low=[-1.0] * 2, action_high=[1.0] * 2)
    learner = Learner(ALGORITHMS["iddpg"], TrainConfig(), 3, 4, 2, **bounds)
    rewards = np.stack([np.random.default_rng(0).normal(-50, 20, 500), np.full(500, -0.5), np.zeros(500)], 1)
    learner.fit_reward_norm(rewards)
    rms = np.sqrt((rewards ** 2).mean(0))
    w = learner.reward_weight.numpy()
    assert w[0] * rms[0] == pytest.approx(1, rel=1e-5) and w[1] * rms[1] == pytest.approx(1, rel=1e-5)
    assert w[2] == pytest.approx(1 / (0.01 * rms.mean()), rel=1e-5)  # an agent without rewards: floored
    learner = Learner(ALGORITHMS["iddpg"], TrainConfig(reward_norm="none"), 3, 4, 2, **bounds)
    learner.fit_reward_norm(rewards)
    assert learner.reward_weight.tolist() == [1.0, 1.0, 1.0]


def test_critic_pretraining_fits_the_demonstrations_returns_until_settled(tmp_path):
    env = ToyEnv(horizon=5)
    demos = Demonstrations(toy_demos(tmp_path / "demos.npz", env, days=2), 3, 4, 2)
    rtg = demos.returns_to_go(gamma=0.5)
    rew = demos.transitions()["rew"]
    np.testing.assert_allclose(rtg[4], rew[4])                                  # the day's last step
    np.testing.assert_allclose(rtg[3], rew[3] + 0.5 * rew[4], rtol=1e-6)         # discounted within a day
    np.testing.assert_allclose(rtg[0], sum(0.5 ** k * rew[k] for k in range(5)), rtol=1e-5)
    cfg = toy_config(tmp_path, demos=str(tmp_path / "demos.npz"), demo_replay=True, pretrain_steps=100,
                     critic_pretrain_steps=3000, critic_pretrain_tol=0.3, total_steps=30, learning_starts=10,
                     critic_lr=3e-3)
    first = progress(run_toy(cfg, env_kw={"horizon": 5}))[0]
    assert 200 <= first["critic_pretrain_steps"] < 3000 and first["critic_pretrain_steps"] % 100 == 0
    assert math.isfinite(first["critic_mc_loss"])


# ---- the actor: AWAC, exploration floor, online labels ------------------------------------
class _QuadraticCritic(nn.Module):
    """Q_i = -(a_i0 - 0.5)^2 for each agent's own first action, twice (a fixed twin critic)."""

    def forward(self, obs, act, state=None, act_self=None):
        own = act if act_self is None else act_self
        return (-(own[..., 0] - 0.5) ** 2).unsqueeze(0).expand(2, -1, -1)

    def first(self, obs, act, state=None, act_self=None):
        return self(obs, act, state, act_self)[0]


def _fit_actor(learner, objective, batch, imitation, beta, steps):
    """``steps`` actor steps of ``objective`` on one fixed batch; the last step's metrics."""
    for _ in range(steps):
        loss, metrics = objective(learner, batch, imitation, beta=beta)
        learner.actor_opt.zero_grad()
        loss.backward()
        learner.actor_opt.step()
    return metrics


def test_awac_moves_the_policy_toward_the_actions_the_critic_prefers():
    from agents.marl.algorithms import Learner
    from agents.marl.objectives import awac_objective

    torch.manual_seed(0)
    learner = Learner(ALGORITHMS["imitative_diffattn"], TrainConfig(actor_objective="awac", actor_lr=3e-3), 2, 3, 2,
                      action_low=[-1.0, -1.0], action_high=[1.0, 1.0])
    learner.critic = _QuadraticCritic()
    obs = torch.rand(256, 2, 3)
    act = torch.rand(256, 2, 2) * 2 - 1  # what the data holds: uniform actions
    metrics = _fit_actor(learner, awac_objective, {"obs": obs, "act": act}, (obs, act), 0.0, 300)
    with torch.no_grad():
        mean = learner.actor.mean_action(obs)
    assert abs(float(mean[..., 0].mean()) - 0.5) < 0.2   # toward the best action in the data
    assert abs(float(mean[..., 1].mean())) < 0.2          # the critic is indifferent: the data's mean
    assert metrics["awac_weight_max"] > 1.0


def test_awac_columns_improves_the_critic_columns_and_leaves_the_others_to_imitation():
    from agents.marl.algorithms import Learner
    from agents.marl.objectives import OBJECTIVES

    def trained(objective):
        torch.manual_seed(0)
        cfg = TrainConfig(actor_objective=objective, actor_lr=3e-3, imitation_loss="mean", critic_actions="pv_q")
        learner = Learner(ALGORITHMS["imitative_diffattn"], cfg, 2, 3, 2, action_low=[-1.0, -1.0],
                          action_high=[1.0, 1.0], action_names=["pv_q", "battery"])
        learner.critic = _QuadraticCritic()  # prefers pv_q = 0.5, indifferent to the battery
        obs = torch.rand(256, 2, 3)
        act = torch.stack([torch.rand(256, 2) * 2 - 1, -0.2 - 0.8 * torch.rand(256, 2)], -1)  # replay: battery < 0
        expert = torch.tensor([-0.5, 0.3]).expand(256, 2, 2)
        metrics = _fit_actor(learner, OBJECTIVES[objective], {"obs": obs, "act": act}, (obs, expert), 1.0, 400)
        with torch.no_grad():
            return learner.actor.mean_action(obs).mean(dim=(0, 1)), metrics

    (pv_q, battery), metrics = trained("awac_columns")
    assert abs(float(pv_q) - 0.5) < 0.2 and metrics["awac_weight_max"] > 1.0  # the critic's column: the best replayed
    assert abs(float(battery) - 0.3) < 0.05                                    # the imitated column: the expert's
    _, battery_all = trained("awac")[0]
    assert float(battery_all) < 0.2   # plain awac regresses every column toward the replay, pulling it off the expert
    with pytest.raises(ConfigError, match="'awac_columns' improves the critic_actions columns alone"):
        validate(TrainConfig(algo="imitative_diffattn", actor_objective="awac_columns"))


class _OffsetCritic(_QuadraticCritic):
    """Q_i = -(a_i0 - 0.5)^2 - 1: the normalized Q term (Q / mean|Q|) keeps a finite scale at the optimum."""

    def forward(self, obs, act, state=None, act_self=None):
        return super().forward(obs, act, state, act_self) - 1.0


def test_critic_actions_are_left_to_the_q_term_while_the_other_columns_imitate():
    from agents.marl.algorithms import Learner
    from agents.marl.objectives import q_objective

    def trained(critic_actions, handover=1.0):
        torch.manual_seed(0)
        cfg = TrainConfig(q_weight=0.2, actor_lr=3e-3, imitation_loss="mean", critic_actions=critic_actions)
        learner = Learner(ALGORITHMS["imitative_diffattn"], cfg, 2, 3, 2, action_low=[-1.0, -1.0],
                          action_high=[1.0, 1.0], action_names=["pv_q", "battery"])
        learner.critic = _OffsetCritic()  # prefers pv_q = 0.5
        learner.handover = handover
        obs = torch.rand(256, 2, 3)
        expert = torch.tensor([-0.5, 0.3]).expand(256, 2, 2)  # the expert says pv_q = -0.5, battery 0.3
        _fit_actor(learner, q_objective, {"obs": obs, "act": expert}, (obs, expert), 1.0, 400)
        with torch.no_grad():
            return learner.actor.mean_action(obs).mean(dim=(0, 1))

    free, held = trained("pv_q"), trained("")
    assert abs(float(free[0]) - 0.5) < 0.1              # the critic alone sets the left-out column
    assert float(held[0]) < 0.0                         # imitated, the expert's -0.5 outweighs the small Q term
    assert abs(float(free[1]) - 0.3) < 0.1 and abs(float(held[1]) - 0.3) < 0.1  # the other column imitates in both
    # a gradual handover (critic_handover_steps): nothing handed over is the held actor, half of it lies between
    assert torch.equal(trained("pv_q", handover=0.0), held)
    assert float(held[0]) + 0.05 < float(trained("pv_q", handover=0.5)[0]) < float(free[0]) - 0.1
    bounds = dict(action_low=[-1.0, -1.0], action_high=[1.0, 1.0])
    with pytest.raises(ConfigError, match="critic_actions: \\['pv_qq'\\] not among the action columns"):
        Learner(ALGORITHMS["imitative_diffattn"], TrainConfig(critic_actions="pv_qq"), 2, 3, 2,
                action_names=["pv_q", "battery"], **bounds)
    with pytest.raises(ConfigError, match="leaves every action column"):
        Learner(ALGORITHMS["imitative_diffattn"], TrainConfig(critic_actions="pv_q,battery"), 2, 3, 2,
                action_names=["pv_q", "battery"], **bounds)
    with pytest.raises(ConfigError, match="critic_actions: 'pv_q' .* algo 'bc' has no critic"):
        validate(TrainConfig(algo="bc", critic_actions="pv_q"))
    with pytest.raises(ConfigError, match="critic_handover_steps: 50 .* critic_actions is empty"):
        validate(TrainConfig(algo="imitative_diffattn", critic_handover_steps=50))
    with pytest.raises(ConfigError, match="critic_handover_steps"):
        validate(TrainConfig(algo="imitative_diffattn", critic_actions="pv_q", critic_handover_steps=-1))


def test_the_handover_share_starts_with_the_q_term_and_rises_linearly():
    from agents.marl.train import handover_share
    cfg = TrainConfig(learning_starts=96, critic_warmup_steps=100, critic_handover_steps=400)
    assert [handover_share(cfg, s) for s in (0, 196, 296, 596, 1800)] == [0.0, 0.0, 0.25, 1.0, 1.0]
    at_once = TrainConfig(learning_starts=96, critic_warmup_steps=100)
    assert [handover_share(at_once, s) for s in (196, 197)] == [0.0, 1.0]


def _toy_actor(run_dir):
    """The kept actor of a toy run (load_actor refuses the toy's observation fields)."""
    saved = torch.load(run_dir / "actor.pt", weights_only=True)
    actor = Actor(**{**saved["spec"], "hidden": tuple(saved["spec"]["hidden"]),
                     "log_std_bounds": tuple(saved["spec"]["log_std_bounds"])})
    actor.load_state_dict(saved["state_dict"])
    return actor


def test_min_std_keeps_exploring_while_the_mean_imitates(tmp_path):
    cfg = toy_config(tmp_path, algo="bc", imitation_loss="mean", min_std=0.2, total_steps=200, learning_starts=0,
                     actor_lr=3e-3)
    env = ToyEnv()
    run_dir = train(cfg, make_env=lambda c, evaluation: ToyEnv(), expert_fn=env.expert)
    actor = _toy_actor(run_dir)
    _, log_std = actor(torch.rand(8, 3, 4))
    assert (actor.std(log_std) >= 0.2).all()
    assert progress(run_dir)[-1]["imitation_loss"] < progress(run_dir)[0]["imitation_loss"]


def test_critic_actions_std_widens_exploration_on_the_critic_columns_only(tmp_path):
    from agents.marl.algorithms import Learner
    names, bounds = ["pv_q", "battery"], dict(action_low=[-1.0, -1.0], action_high=[1.0, 1.0])
    cfg = TrainConfig(min_std=0.1, critic_actions="pv_q", critic_actions_std=0.4)
    learner = Learner(ALGORITHMS["imitative_diffattn"], cfg, 2, 3, 2, action_names=names, **bounds)
    actor = learner.actor
    assert actor.min_std.tolist() == pytest.approx([0.4, 0.1])
    with torch.no_grad():  # log_std at its lower bound: the spread is the floor, column by column
        std = actor.std(torch.full((5, 2, 2), actor.log_std_bounds[0]))
        assert std[..., 0].min() >= 0.4 and std[..., 1].max() < 0.11
        a = torch.stack([actor.sample(torch.zeros(1, 2, 3))[0] for _ in range(400)])
    assert a[..., 0].std() > 1.5 * a[..., 1].std()  # the executed pv_q varies more than the imitated column
    # saved and loaded as the co-simulation loads it; the floor travels in the spec, not the weights
    assert "min_std" not in actor.state_dict()
    save_actor(tmp_path / "actor.pt", actor, algo="imitative_diffattn")
    assert load_actor(tmp_path).min_std.tolist() == pytest.approx([0.4, 0.1])
    # below min_std the floor stays min_std; a scalar floor stays a scalar in the spec (earlier actors load as before)
    same = Learner(ALGORITHMS["imitative_diffattn"], TrainConfig(min_std=0.1, critic_actions="pv_q",
                   critic_actions_std=0.05), 2, 3, 2, action_names=names, **bounds)
    assert same.actor.spec["min_std"] == 0.1 and same.actor.min_std.tolist() == pytest.approx([0.1, 0.1])
    with pytest.raises(ValueError, match="min_std: expected one finite value >= 0 or 2"):
        Actor(2, 3, 2, min_std=[0.1, -0.2], **bounds)
    with pytest.raises(ConfigError, match="critic_actions_std: 0.3 .* critic_actions is empty"):
        validate(TrainConfig(algo="imitative_diffattn", critic_actions_std=0.3))
    with pytest.raises(ConfigError, match="critic_actions_std: 1.5 outside the allowed range"):
        validate(TrainConfig(algo="imitative_diffattn", critic_actions="pv_q", critic_actions_std=1.5))


class _RewardModel(_QuadraticCritic):
    """r̂_i = -(a_i0 + 0.3)^2 - (a_i1 - 0.9)^2 of each agent's own action (one network, as Learner.reward_model)."""

    def forward(self, obs, act, state=None, act_self=None):
        own = act if act_self is None else act_self
        return (-(own[..., 0] + 0.3) ** 2 - (own[..., 1] - 0.9) ** 2).unsqueeze(0)


def test_the_reward_model_leads_the_critic_columns_and_only_them():
    from agents.marl.algorithms import Learner
    from agents.marl.objectives import q_objective

    def trained(value):
        torch.manual_seed(0)
        cfg = TrainConfig(q_weight=0.2, actor_lr=3e-3, imitation_loss="mean", critic_actions="pv_q",
                          critic_actions_value=value)
        learner = Learner(ALGORITHMS["imitative_diffattn"], cfg, 2, 3, 2, action_low=[-1.0, -1.0],
                          action_high=[1.0, 1.0], action_names=["pv_q", "battery"])
        assert (learner.reward_model is not None) == (value == "reward")
        learner.critic = _OffsetCritic()  # Q prefers pv_q = 0.5 and is indifferent to the battery
        if value == "reward":
            learner.reward_model = _RewardModel()  # the step's reward prefers pv_q = -0.3 (and a battery of 0.9)
        obs = torch.rand(256, 2, 3)
        expert = torch.tensor([0.0, 0.3]).expand(256, 2, 2)
        _fit_actor(learner, q_objective, {"obs": obs, "act": expert}, (obs, expert), 1.0, 400)
        with torch.no_grad():
            return learner.actor.mean_action(obs).mean(dim=(0, 1))

    by_reward, by_q = trained("reward"), trained("q")
    assert abs(float(by_reward[0]) + 0.3) < 0.1 and abs(float(by_q[0]) - 0.5) < 0.1  # who leads the critic column
    # the reward model's pull on the imitated column never reaches it: the expert's 0.3 in both
    assert abs(float(by_reward[1]) - 0.3) < 0.05 and abs(float(by_q[1]) - 0.3) < 0.05
    with pytest.raises(ConfigError, match="critic_actions_value: 'reward' values the critic_actions columns; "
                                          "critic_actions is empty"):
        validate(TrainConfig(algo="imitative_diffattn", critic_actions_value="reward"))
    with pytest.raises(ConfigError, match="critic_actions_value: 'reward' .* actor_objective is 'awac_columns'"):
        validate(TrainConfig(algo="imitative_diffattn", critic_actions="pv_q", critic_actions_value="reward",
                             actor_objective="awac_columns"))
    with pytest.raises(ConfigError, match="critic_actions_value: 'r' is not one of"):
        validate(TrainConfig(algo="imitative_diffattn", critic_actions="pv_q", critic_actions_value="r"))


class _NamedToyEnv(ToyEnv):
    """The toy with named action columns c0, c1 (critic_actions names them); c0's effect ends with the step, as
    reactive power's does."""

    fleet = SimpleNamespace(action_fields=("c0", "c1"))


def _unaware_expert(obs):
    """The toy's expert with column c0 left at 0 (as an expert without network limits leaves pv_q at 0), while the
    reward still wants a*'s c0."""
    a = _NamedToyEnv().expert(obs)
    a[..., 0] = 0.0
    return a


def test_reward_model_learns_the_step_reward_in_training_and_resumes(tmp_path):
    demos = str(toy_demos(tmp_path / "demos.npz", _NamedToyEnv(), days=3, expert=_unaware_expert))
    cfg = dict(total_steps=600, learning_starts=60, log_every=100, demos=demos, demo_replay=True, pretrain_steps=200,
               critic_pretrain_steps=300, critic_actions="c0", critic_actions_value="reward", imitation_loss="mean",
               min_std=0.3, critic_lr=3e-3, actor_lr=1e-3, imitation_anneal_steps=100)

    def run(name, resume=None, **kw):
        return train(toy_config(tmp_path, run_name=name, **{**cfg, **kw}),
                     make_env=lambda c, evaluation: _NamedToyEnv(), expert_fn=_unaware_expert, resume=resume)

    straight = run("straight")
    rows = progress(straight)
    assert math.isfinite(rows[0]["reward_model_loss"])     # fit alongside the critic's pretraining
    assert rows[-1]["reward_model_r2"] > 0.5                # it explains the step's reward
    # the actors' c0 moves from the expert's 0 toward the reward's a* (its column of tanh(o W))
    actor = _toy_actor(straight)
    obs = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (500, 3, 4)).astype(np.float32))
    with torch.no_grad():
        c0 = actor.mean_action(obs)[..., 0]
    best = torch.from_numpy(ToyEnv().expert(obs.numpy()))[..., 0]
    assert (c0 - best).pow(2).mean() < 0.5 * best.pow(2).mean()
    # the reward model is part of the checkpoint: a resumed run continues identically
    split = run("split", resume=run("split", total_steps=250))
    a = torch.load(straight / "checkpoint.pt", weights_only=True)["learner"]
    b = torch.load(split / "checkpoint.pt", weights_only=True)["learner"]
    for part in ("actor", "reward_model"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)


def test_early_stopping_after_patience_evaluations_without_a_better_actor(tmp_path):
    cfg = toy_config(tmp_path, total_steps=3000, keep_best=True, eval_every=100, eval_episodes=1, eval_days="train",
                     early_stop_patience=2, actor_lr=0.0, snapshot_every=100)  # the actor never changes: no gain
    run_dir = run_toy(cfg)
    loop = torch.load(run_dir / "checkpoint.pt", weights_only=True)["loop"]
    assert loop["finished"] and loop["step"] == 200
    assert sorted(p.name for p in (run_dir / "snapshots").iterdir()) == ["actor_0.pt", "actor_100.pt", "actor_200.pt"]
    with pytest.raises(ConfigError, match="early_stop_patience: .* set keep_best"):
        run_toy(dataclasses.replace(cfg, keep_best=False, run_name="bad"))

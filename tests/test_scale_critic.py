"""The attention critic at scale: attention within neighbourhoods (feeders) computed block by block
equals full attention when the neighbourhood is everyone, equals masked attention otherwise, and
trains in the imitative algorithm with agents grouped by feeder."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from agents.marl.attention import ATTENTIONS, BLOCK_SIZE, AgentBlocks
from agents.marl.critics import AttentionCritic
from agents.marl.train import TrainConfig, critic_groups, make_env, train, validate
from simulators.validation import ConfigError

GROUPS = [3, 0, 3, 7, 0, 0, 3, 7, 9]  # agent 8 alone in its group


def _pair(kind, groups, self_mask=True, seed=0):
    torch.manual_seed(seed)
    full = ATTENTIONS[kind](16, 2, self_mask=self_mask)
    grouped = ATTENTIONS[kind](16, 2, self_mask=self_mask, groups=groups)
    grouped.load_state_dict(full.state_dict())
    return full, grouped


@pytest.mark.parametrize("kind", sorted(ATTENTIONS))
@pytest.mark.parametrize("self_mask", [True, False])
def test_neighbourhood_of_everyone_is_full_attention(kind, self_mask):
    full, grouped = _pair(kind, [4] * 9, self_mask)
    x, y = torch.randn(5, 9, 16), torch.randn(5, 9, 16)
    expected, w_full = full(x, y, y, need_weights=True)
    got, w_grouped = grouped(x, y, y)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grouped(x, y, y, need_weights=True)[1], w_full)


@pytest.mark.parametrize("kind", sorted(ATTENTIONS))
@pytest.mark.parametrize("block_size", [BLOCK_SIZE, 4])
def test_neighbourhoods_equal_block_diagonal_masked_attention(kind, block_size):
    _, grouped = _pair(kind, GROUPS)
    grouped.blocks = AgentBlocks(GROUPS, self_mask=True, block_size=block_size)
    # groups of 3, 3, 2, 1 agents: one block of 128, or three blocks of 4 (3 | 3 | 2 + 1)
    assert grouped.blocks.n_blocks == (1 if block_size == BLOCK_SIZE else 3)
    x = torch.randn(4, 9, 16, requires_grad=True)
    fast, _ = grouped(x, x, x)
    explicit, weights = grouped(x, x, x, need_weights=True)
    torch.testing.assert_close(fast, explicit, rtol=1e-5, atol=1e-6)
    labels = torch.tensor(GROUPS)
    outside = (labels.view(-1, 1) != labels.view(1, -1)) | torch.eye(9, dtype=torch.bool)
    outside[8, 8] = False  # alone in its group: it attends to itself, the only key it has
    assert (weights[:, :, outside] == 0).all() and torch.isfinite(fast).all()
    # agent 1's output depends on its feeder (agents 4, 5) and on nobody else
    fast[:, 1].sum().backward()
    touched = x.grad.abs().sum(dim=(0, 2)) > 0
    assert touched.tolist() == [False, True, False, False, True, True, False, False, False]


@pytest.mark.parametrize("kind", ["diff", "softmax"])
def test_critic_with_everyone_as_neighbour_is_the_full_critic(kind):
    torch.manual_seed(1)
    full = AttentionCritic(7, 5, 2, embed_dim=16, n_heads=2, attention=kind)
    grouped = AttentionCritic(7, 5, 2, embed_dim=16, n_heads=2, attention=kind, groups=[2] * 7)
    grouped.load_state_dict(full.state_dict())
    obs, act, own = torch.randn(4, 7, 5), torch.rand(4, 7, 2), torch.rand(4, 7, 2)
    torch.testing.assert_close(grouped(obs, act, act_self=own), full(obs, act, act_self=own), rtol=1e-5, atol=1e-6)


def test_grouped_critic_scales_and_keeps_the_market_wide_view():
    n = 60
    groups = np.repeat(np.arange(6), 10)
    critic = AttentionCritic(n, 5, 2, embed_dim=16, n_heads=2, groups=groups)
    obs, act = torch.randn(3, n, 5), torch.rand(3, n, 2, requires_grad=True)
    q = critic(obs, act)
    assert q.shape == (3, n) and torch.isfinite(q).all()
    q[:, 0].sum().backward()
    # agent 0 sees other feeders only through their mean embeddings, but it does see them
    assert act.grad[:, 10:].abs().sum() > 0
    small = AgentBlocks(groups, self_mask=True, block_size=20)
    assert (small.n_blocks, small.block) == (3, 20)  # whole feeders packed, two per block: O(N·S), not O(N²)
    with pytest.raises(ValueError, match=r"query: expected shape \(\*, 60, 16\)"):
        critic.attention(torch.randn(1, 59, 16), torch.randn(1, 59, 16), torch.randn(1, 59, 16))


def test_feeder_neighbourhoods_in_training(tmp_path):
    options = {"network": "simbench:1-MVLV-rural-all-0-sw", "specs": "generate", "n_prosumers": 40}
    cfg = TrainConfig(algo="imitative_diffattn", env_options=options, expert="policy:rule", total_steps=4,
                      learning_starts=2, batch_size=4, buffer_size=8, log_every=4, eval_episodes=0,
                      results_dir=str(tmp_path), progress=False, threads=1, critic_neighbourhood="feeder")
    env = make_env(cfg)
    groups = critic_groups(cfg, env)
    assert len(groups) == 40 and len(set(groups)) > 10  # 40 prosumers spread over many LV feeders
    run_dir = train(cfg, make_env=lambda cfg, evaluation: env)
    row = pd.read_csv(run_dir / "progress.csv").iloc[-1]
    assert row["step"] == 4 and math.isfinite(row["critic_loss"]) and math.isfinite(row["actor_loss"])
    with pytest.raises(ConfigError, match="critic_neighbourhood: 'feeder' needs an attention critic"):
        validate(TrainConfig(algo="matd3", critic_neighbourhood="feeder"))
    with pytest.raises(ConfigError, match="critic_neighbourhood"):
        validate(TrainConfig(critic_neighbourhood="street"))


@pytest.mark.parametrize("shared,id_dim", [(True, 0), (True, 4), (False, 0)])
def test_critic_on_sampled_blocks_equals_those_agents_columns_of_the_full_critic(shared, id_dim):
    torch.manual_seed(2)
    n, groups = 60, np.repeat([5, 1, 4, 0, 3, 2], 10)
    critic = AttentionCritic(n, 5, 2, embed_dim=16, n_heads=2, groups=groups, shared=shared, id_embed_dim=id_dim)
    critic.attention.blocks = AgentBlocks(groups, self_mask=True, block_size=20)  # 3 blocks of 2 feeders
    obs, act, own = torch.randn(3, n, 5), torch.rand(3, n, 2), torch.rand(3, n, 2)
    full = critic(obs, act, act_self=own)
    sub = critic.attention.blocks.subset([2, 0])
    assert len(sub.agents) == 40 and sub.agents.tolist() == sorted(sub.agents.tolist())
    torch.testing.assert_close(critic(obs, act, act_self=own, blocks=[2, 0]), full[:, sub.agents], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"block_ids: expected 1 or more of 0..2, got \[3\]"):
        critic(obs, act, blocks=[3])
    with pytest.raises(ValueError, match="blocks: this critic has no neighbourhoods"):
        AttentionCritic(n, 5, 2, embed_dim=16, n_heads=2)(obs, act, blocks=[0])


def test_sampled_blocks_hold_the_other_feeders_as_constant_context():
    """With blocks, a loss over the drawn agents has exactly the full critic's gradient for every
    parameter but the sa-encoder, and the sa-encoder's is the one with the other agents'
    embeddings held constant in the feeder means (what makes the update cost a block, not N)."""
    torch.manual_seed(4)
    n, groups = 60, np.repeat([5, 1, 4, 0, 3, 2], 10)
    critic = AttentionCritic(n, 5, 2, embed_dim=16, n_heads=2, groups=groups, id_embed_dim=4)
    critic.attention.blocks = AgentBlocks(groups, self_mask=True, block_size=20)
    obs, act = torch.randn(3, n, 5), torch.rand(3, n, 2)
    agents = critic.attention.blocks.subset([1]).agents

    def grads(q):
        critic.zero_grad()
        q.pow(2).sum().backward()
        return {name: p.grad.clone() for name, p in critic.named_parameters() if p.grad is not None}

    sampled = grads(critic(obs, act, blocks=[1]))
    exact = grads(critic(obs, act)[:, agents])
    encoder = {name for name in exact if name.startswith("sa_encoder.")}
    for name in set(exact) - encoder:
        torch.testing.assert_close(sampled[name], exact[name], rtol=1e-4, atol=1e-6, msg=name)
    assert any(not torch.allclose(sampled[name], exact[name]) for name in encoder)  # the other feeders' path is cut
    other = ~torch.isin(torch.arange(n), agents).view(1, n, 1)
    sa_forward = critic.sa_encoder.forward

    def held(x, ids=None):  # the full critic's encoder with the other agents' embeddings detached
        e = sa_forward(x, ids)
        return torch.where(other, e.detach(), e) if ids is None and x.shape[1] == n else e

    critic.sa_encoder.forward = held
    constant = grads(critic(obs, act)[:, agents])
    del critic.sa_encoder.forward
    for name in encoder:
        torch.testing.assert_close(sampled[name], constant[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("value", ["q", "reward"])
def test_td_step_on_sampled_blocks_learns_only_from_their_agents(value):
    from agents.marl.algorithms import ALGORITHMS, Learner
    from simulators.prosumer.interface import ACTION_FIELDS, OBS_FIELDS

    torch.manual_seed(3)
    n, f, a, groups = 60, len(OBS_FIELDS), len(ACTION_FIELDS), np.repeat(np.arange(6), 10)
    cfg = TrainConfig(algo="imitative_diffattn", critic_neighbourhood="feeder", critic_blocks=1, embed_dim=16,
                      n_heads=2, critic_actions="pv_q" if value == "reward" else "", critic_actions_value=value)
    validate(cfg)
    learner = Learner(ALGORITHMS[cfg.algo], cfg, n, f, a, groups=groups, action_names=list(ACTION_FIELDS))
    models = (learner.critic, learner.critic_target) + ((learner.reward_model,) if value == "reward" else ())
    for net in models:
        for member in net.members:
            member.attention.blocks = AgentBlocks(groups, self_mask=True, block_size=20)
    learner.fit_reward_norm(torch.randn(8, n))
    before = [net.members[0].head.id_embed.weight.detach().clone() for net in models]
    drawn = []
    draw = learner._critic_blocks
    learner._critic_blocks = lambda: drawn.append(draw()) or drawn[-1]
    b = {"obs": torch.randn(4, n, f), "act": torch.rand(4, n, a), "rew": torch.randn(4, n),
         "next_obs": torch.randn(4, n, f), "discount": torch.ones(4), "rew_step": torch.randn(4, n)}
    metrics = learner.update_critic(b)
    blocks, agents = drawn[0]
    assert len(blocks) == 1 and len(agents) == 20 and math.isfinite(metrics["critic_loss"])
    for net, was in zip(models[:1] + models[2:], before[:1] + before[2:]):  # the critic, and the reward model
        moved = (net.members[0].head.id_embed.weight != was).any(dim=1)
        assert moved.nonzero().squeeze(1).tolist() == agents.tolist()  # only the drawn agents' loss was used
    assert ("reward_model_loss" in metrics) == (value == "reward")
    assert math.isfinite(metrics.get("reward_model_loss", 0.0))
    with pytest.raises(ConfigError, match="critic_blocks: 2 samples neighbourhood blocks"):
        validate(TrainConfig(critic_blocks=2))


def test_scale_benchmark_times_the_critic_update():
    from scenarios.bench_scale import critic_update

    times = critic_update(12, "ieee33", batch=4, neighbourhood="feeder", threads=1, embed_dim=16, repeats=1, blocks=1)
    assert set(times) == {"one critic", "twin TD step"} and all(w > 0 and c >= 0 for w, c in times.values())

"""The algorithms as data (``ALGORITHMS``) and one ``Learner`` that performs their updates.

Every algorithm is the same actor-critic update with different parts switched on: which
critic (``critics.CRITICS``), how many (2 = TD3's clipped double Q), a Gaussian or deterministic
actor, target policy smoothing, delayed actor updates, an entropy term (soft Q, MAAC) and the
Wasserstein imitation term.  train.py runs the loop; this module holds the networks and the
gradient steps, so no algorithm is a copy of another.

Critic target (n-step, undiscounted by default; the buffer cuts the sum at the day's end):
    y_i = reward_scale · w_i · Σ_k γ^k r_i,t+k + γ^n (1 - done) min_k Q'_k,i(s', π'(o') + ε)
with w_i = 1 / RMS of agent i's rewards in the replay at the first update (``reward_norm='agent'``),
so that every agent's Q is on the same scale.  Critic targets track the critics at every critic
step (τ), the actor target at every actor step.  The actor loss is one of objectives.OBJECTIVES.
With ``critic_actions_value='reward'`` a further network of the critic's kind is fit at every critic
step to the step's own reward, r̂_i = reward_scale · w_i · r_i,t, and the 'q' objective follows it
instead of Q on the critic_actions columns (objectives.q_objective).
"""

import copy
from dataclasses import dataclass

import torch
from torch import nn

from agents.marl.critics import CRITICS, CriticEnsemble
from agents.marl.losses import td_loss
from agents.marl.networks import Actor
from agents.marl.objectives import OBJECTIVES, imitation_distance
from simulators.validation import ConfigError

REWARD_NORMS = ("agent", "none")


@dataclass(frozen=True)
class Algorithm:
    critic: str
    """key of critics.CRITICS, '' = no critic (behaviour cloning)"""
    n_critics: int
    """critics trained on one target; 2 = clipped double Q (TD3)"""
    actor_head: str
    """gaussian | deterministic"""
    target_smoothing: bool
    """add clipped noise to the target action (TD3)"""
    policy_delay: int
    """critic updates per actor (and target) update"""
    imitation: bool
    """add β_t · W2²(policy, expert) to the actor loss"""
    rl: bool = True
    """use the critic's Q in the actor loss (False: behaviour cloning only)"""
    entropy: bool = False
    """soft Q-learning with entropy bonus entropy_coef (SAC-style, MAAC)"""
    needs_state: bool = False
    """the critic reads the environment's global state"""
    online_labels: bool = False
    """needs an online expert that labels the states the actors visit (DAgger), demonstrations alone are not enough"""


ALGORITHMS = {
    "imitative_diffattn": Algorithm("diffattn", 2, "gaussian", True, 2, imitation=True),
    # the attention ablation: the proposed method with MAAC's softmax attention in the critic
    "imitative_softmax": Algorithm("softmax_attn", 2, "gaussian", True, 2, imitation=True),
    "matd3": Algorithm("mlp", 2, "deterministic", True, 2, imitation=False, needs_state=True),
    # MATD3 fed the same demonstrations (TD3+BC); its MLP critic reads every agent's observation
    # instead of the global state, which demonstrations do not hold
    "matd3_bc": Algorithm("mlp", 2, "deterministic", True, 2, imitation=True),
    "maddpg": Algorithm("mlp", 1, "deterministic", False, 1, imitation=False, needs_state=True),
    "maac": Algorithm("softmax_attn", 1, "gaussian", False, 1, imitation=False, entropy=True),
    "iddpg": Algorithm("local", 1, "deterministic", False, 1, imitation=False),
    "bc": Algorithm("", 0, "gaussian", False, 1, imitation=True, rl=False),
    # behaviour cloning on the demonstrations plus the expert's labels of the states the actor visits
    # (Ross et al. 2011); the evaluation gives it expert='policy:expert' (agents.marl.evaluate.TRAIN_OPTIONS)
    "dagger": Algorithm("", 0, "gaussian", False, 1, imitation=True, rl=False, online_labels=True),
}


def critic_kwargs(kind, cfg):
    """Constructor options of each critic kind from the TrainConfig."""
    attention = dict(embed_dim=cfg.embed_dim, n_heads=cfg.n_heads, depth=cfg.attn_depth,
                     id_embed_dim=cfg.critic_agent_id)
    width = (cfg.critic_hidden, cfg.critic_hidden)
    return {"diffattn": attention, "softmax_attn": attention, "mlp": dict(hidden=width),
            "local": dict(hidden=width)}[kind]


class Learner:
    """Actor, critics, their targets and optimizers for one algorithm."""

    def __init__(self, algo, cfg, n_agents, obs_dim, act_dim, state_dim=0, action_low=None, action_high=None,
                 groups=None, action_names=None):
        """``groups``: attention neighbourhood label per agent (attention critics; None = everyone);
        ``action_names`` (A,): the action columns, needed when cfg.critic_actions names some."""
        self.algo, self.cfg = algo, cfg
        bounds = {} if action_low is None else dict(action_low=action_low, action_high=action_high)
        self.critic_columns = _imitation_weight(cfg.critic_actions, action_names, act_dim)
        """(A,) 0/1 tensor: 0 for the columns the imitation term leaves to the critic once handed over, or None"""
        min_std = cfg.min_std
        if self.critic_columns is not None and cfg.critic_actions_std > cfg.min_std:
            min_std = torch.where(self.critic_columns == 0, cfg.critic_actions_std, cfg.min_std).tolist()
        self.actor = Actor(n_agents, obs_dim, act_dim, hidden=(cfg.actor_hidden,) * cfg.actor_layers,
                           head=algo.actor_head, shared=cfg.shared_actor, min_std=min_std, **bounds)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic = self.critic_target = self.actor_target = self.critic_opt = None
        if algo.critic:
            kw = critic_kwargs(algo.critic, cfg) | ({} if groups is None else {"groups": groups})
            sdim = state_dim if algo.needs_state else 0

            def make_critic():
                return CRITICS[algo.critic](n_agents, obs_dim, act_dim, sdim, **kw)

            self.critic = CriticEnsemble(make_critic, algo.n_critics)
            self.critic_target = _frozen_copy(self.critic)
            self.actor_target = _frozen_copy(self.actor)
            self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.reward_model = self.reward_opt = None
        """a network of the critic's kind fit to the step's reward (cfg.critic_actions_value 'reward'), or None"""
        if algo.critic and cfg.critic_actions_value == "reward":
            self.reward_model = CriticEnsemble(make_critic, 1)
            self.reward_opt = torch.optim.Adam(self.reward_model.parameters(), lr=cfg.critic_lr)
        self.handover = 1.0
        """share of the critic_actions columns' imitation already handed to the critic (set by ``update``)"""
        self.n_updates = 0
        self.reward_weight = None
        """(N,) tensor: per-agent reward factor of the TD target, fixed by fit_reward_norm"""

    @property
    def imitation_weight(self):
        """(A,) weight of each column in the imitation term while the Q term is on, or None (every column, fully):
        1 where imitated, 1 - handover on the critic_actions columns."""
        if self.critic_columns is None:
            return None
        return self.critic_columns + (1.0 - self.critic_columns) * (1.0 - self.handover)

    def fit_reward_norm(self, rewards):
        """Fix the per-agent reward factor from stored rewards (K, N): 1/RMS per agent, or 1.

        An agent's RMS is floored at 1 % of the mean over agents (an agent that earned almost
        nothing must not get a huge factor); rewards that are all ~0 (e.g. an exact expert's
        warm-up on a task paid by the distance to it) leave the factor at 1.
        """
        rewards = torch.as_tensor(rewards, dtype=torch.float32)
        rms = rewards.pow(2).mean(0).sqrt()
        if self.cfg.reward_norm == "agent" and rms.mean() > 1e-6:
            self.reward_weight = 1.0 / rms.clamp_min(0.01 * rms.mean())
        else:
            self.reward_weight = torch.ones(rewards.shape[1])

    # ---- acting ------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs, explore):
        """Actions (N, A) float32 for obs (N, F); ``explore`` samples / adds exploration noise."""
        o = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
        if not explore:
            a = self.actor.mean_action(o)
        elif self.algo.actor_head == "gaussian":
            a, _ = self.actor.sample(o)
        else:
            a = self._perturb(self.actor.mean_action(o), self.cfg.exploration_noise, clip=None)
        return a.squeeze(0).numpy()

    def _perturb(self, action, scale, clip):
        """Gaussian noise of std ``scale`` in the normalized [-1, 1] space, kept inside the bounds."""
        noise = torch.randn_like(action) * scale
        if clip is not None:
            noise = noise.clamp(-clip, clip)
        return self.actor.scale((self.actor.normalize(action) + noise).clamp(-1.0, 1.0))

    # ---- updates -----------------------------------------------------------------------
    def update(self, batch, imitation, beta, use_q=True, handover=1.0):
        """One gradient step (critic; actor every policy_delay-th call); returns float metrics.

        ``use_q=False`` (critic warm-up) leaves the Q term out of the actor loss of an imitating
        algorithm: the actor keeps imitating until the critic has learned from its own data.
        ``handover`` in [0, 1]: how much of the critic_actions columns' imitation is already dropped.
        """
        if not 0.0 <= handover <= 1.0:
            raise ValueError(f"handover: {handover} outside [0, 1]")
        self.handover = float(handover)
        metrics = self.update_critic(batch) if self.critic is not None else {}
        self.n_updates += 1
        if self.n_updates % self.algo.policy_delay == 0:
            metrics.update(self._update_actor(batch, imitation, beta, use_q or not self.algo.imitation))
            if self.critic is not None:
                _soft_update(self.actor_target, self.actor, self.cfg.tau)
        return metrics

    def pretrain_actor(self, imitation):
        """One imitation step on (obs, expert action); the actor target follows."""
        il = imitation_distance(self.actor, *imitation, self.cfg.imitation_loss).mean()
        _step(self.actor_opt, il, self.actor, self.cfg.max_grad_norm)
        if self.critic is not None:
            _soft_update(self.actor_target, self.actor, self.cfg.tau)
        return {"imitation_loss": il.item(), "actor_loss": il.item()}

    def update_critic(self, b):
        """One TD step of the critics on batch ``b`` (with 'discount'); critic targets follow."""
        cfg = self.cfg
        with torch.no_grad():
            if self.algo.entropy:
                next_act, next_logp = self.actor_target.sample(b["next_obs"])
            else:
                next_act, next_logp = self.actor_target.mean_action(b["next_obs"]), None
                if self.algo.target_smoothing:
                    next_act = self._perturb(next_act, cfg.policy_noise, clip=cfg.noise_clip)
            blocks, agents = self._critic_blocks()
            pick = (lambda x: x) if agents is None else (lambda x: x[..., agents])
            q_next = self.critic_target(b["next_obs"], next_act, b.get("next_state"), blocks=blocks).min(dim=0).values
            if next_logp is not None:
                q_next = q_next - cfg.entropy_coef * pick(next_logp)
            target = cfg.reward_scale * pick(self.reward_weight) * pick(b["rew"]) + b["discount"].unsqueeze(-1) * q_next
        q = self.critic(b["obs"], b["act"], b.get("state"), blocks=blocks)
        loss = td_loss(q, target)
        _step(self.critic_opt, loss, self.critic, cfg.max_grad_norm)
        _soft_update(self.critic_target, self.critic, cfg.tau)
        metrics = {"critic_loss": loss.item() / self.algo.n_critics, "q_mean": q.mean().item()}
        if self.reward_model is not None:
            metrics.update(self.fit_reward_model(b["obs"], b["act"], b["rew_step"], b.get("state"), blocks, agents))
        return metrics

    def fit_reward_model(self, obs, act, rew, state=None, blocks=None, agents=None):
        """One regression step of the reward model onto the step's rewards ``rew`` (B, N), in the critic's reward
        units (reward_scale and the per-agent factor, no bootstrap); ``blocks`` and their ``agents`` as drawn by
        _critic_blocks (None: every agent)."""
        pick = (lambda x: x) if agents is None else (lambda x: x[..., agents])
        target = self.cfg.reward_scale * pick(self.reward_weight) * pick(rew)
        mse = (self.reward_model(obs, act, state, blocks=blocks)[0] - target).pow(2).mean()
        _step(self.reward_opt, mse, self.reward_model, self.cfg.max_grad_norm)
        return {"reward_model_loss": mse.item(),
                "reward_model_r2": 1.0 - mse.item() / max(target.var().item(), 1e-12)}

    def _critic_blocks(self):
        """(block ids, their agents) of a random draw of cfg.critic_blocks neighbourhood blocks for
        one critic update, or (None, None) for every agent."""
        critic = self.critic.members[0]
        k = self.cfg.critic_blocks
        if not k or k >= critic.n_blocks():
            return None, None
        blocks = torch.randperm(critic.n_blocks())[:k]
        return blocks, critic.attention.blocks.subset(blocks).agents

    def fit_critic_mc(self, obs, act, returns):
        """One regression step of every critic onto Monte-Carlo returns (B, N) of the actions ``act``."""
        target = self.cfg.reward_scale * self.reward_weight * returns
        loss = td_loss(self.critic(obs, act), target)
        _step(self.critic_opt, loss, self.critic, self.cfg.max_grad_norm)
        return {"critic_mc_loss": loss.item() / self.algo.n_critics}

    @torch.no_grad()
    def q_values(self, obs, act, state=None):
        """Q_1 (T, N) of the first critic for observations (T, N, F) and joint actions (T, N, A)."""
        as_t = lambda x: None if x is None else torch.as_tensor(x, dtype=torch.float32)
        return self.critic.first(as_t(obs), as_t(act), as_t(state)).numpy()

    def _update_actor(self, b, imitation, beta, use_q=True):
        if self.algo.rl and use_q:
            loss, metrics = OBJECTIVES[self.cfg.actor_objective](self, b, imitation, beta)
        else:  # behaviour cloning, or an imitating algorithm before its critic is trusted
            loss = imitation_distance(self.actor, *imitation, self.cfg.imitation_loss).mean()
            metrics = {"imitation_loss": loss.item()}
        _step(self.actor_opt, loss, self.actor, self.cfg.max_grad_norm)
        metrics["actor_loss"] = loss.item()
        return metrics

    # ---- checkpointing -----------------------------------------------------------------
    def state_dict(self):
        sd = {"actor": self.actor.state_dict(), "actor_opt": self.actor_opt.state_dict(), "n_updates": self.n_updates,
              "reward_weight": self.reward_weight}
        if self.critic is not None:
            sd.update(critic=self.critic.state_dict(), critic_target=self.critic_target.state_dict(),
                      actor_target=self.actor_target.state_dict(), critic_opt=self.critic_opt.state_dict())
        if self.reward_model is not None:
            sd.update(reward_model=self.reward_model.state_dict(), reward_opt=self.reward_opt.state_dict())
        return sd

    def load_state_dict(self, sd):
        self.n_updates = int(sd["n_updates"])
        self.reward_weight = sd.get("reward_weight")
        for name in ("actor", "actor_opt", "critic", "critic_target", "actor_target", "critic_opt", "reward_model",
                     "reward_opt"):
            if getattr(self, name) is not None:
                getattr(self, name).load_state_dict(sd[name])


def _imitation_weight(critic_actions, action_names, act_dim):
    """0 for the columns ``critic_actions`` (comma-separated names) leaves to the critic, 1 elsewhere; None if none."""
    names = [c.strip() for c in (critic_actions or "").split(",") if c.strip()]
    if not names:
        return None
    allowed = list(action_names or [])
    if len(allowed) != act_dim:
        raise ValueError(f"action_names: critic_actions needs the {act_dim} action column names, got {allowed}")
    unknown = [c for c in names if c not in allowed]
    if unknown:
        raise ConfigError(f"critic_actions: {unknown} not among the action columns {allowed}")
    if len(set(names)) == act_dim:
        raise ConfigError(f"critic_actions: {critic_actions!r} leaves every action column to the critic; keep at "
                          f"least one of {allowed} imitated")
    return torch.tensor([0.0 if a in names else 1.0 for a in allowed])


def _frozen_copy(module):
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def _soft_update(target, source, tau):
    for t, s in zip(target.parameters(), source.parameters()):
        t.lerp_(s, tau)


def _step(opt, loss, module, max_grad_norm):
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm > 0:
        nn.utils.clip_grad_norm_(module.parameters(), max_grad_norm)
    opt.step()


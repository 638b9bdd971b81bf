"""Batched per-agent networks: N agents' MLPs held as (N, in, out) tensors, evaluated with bmm.

Every tensor is shaped (batch, agents, features).  ``AgentMLP`` either keeps one weight set per
agent (``shared=False``: weights (N, in, out), one ``torch.bmm`` per layer for all agents, no
Python loop over agents) or one shared MLP whose input is extended by a learned agent-id
embedding (``shared=True``).  ``agent_ids`` (n,) selects a subset of the agents (global
indices), so the co-simulation can ask one prosumer's actor on its own.

``Actor`` puts a head on top: a diagonal Gaussian (pre-squash mean and log-std) or a
deterministic mean; both are squashed with tanh into [action_low, action_high].
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from agents.marl.losses import wasserstein_imitation
from simulators.prosumer.interface import ACTION_HIGH, ACTION_LOW

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}
HEADS = ("gaussian", "deterministic")


def check_shape(name, tensor, expected):
    """Raise ValueError naming ``name`` unless ``tensor.shape`` matches ``expected`` (None = any)."""
    actual = tuple(tensor.shape)
    ok = len(actual) == len(expected) and all(e is None or e == a for e, a in zip(expected, actual))
    if not ok:
        dims = ["*" if e is None else str(e) for e in expected]
        shown = f"({dims[0]},)" if len(dims) == 1 else "(" + ", ".join(dims) + ")"
        raise ValueError(f"{name}: expected shape {shown}, got {actual}")


class BatchedLinear(nn.Module):
    """N independent linear layers: x (B, n, in) -> (B, n, out) with weight (N, in, out)."""

    def __init__(self, n_agents, in_dim, out_dim):
        super().__init__()
        self.n_agents, self.in_dim, self.out_dim = n_agents, in_dim, out_dim
        # same distribution as nn.Linear's default (uniform ±1/sqrt(in)) for every agent
        bound = 1.0 / math.sqrt(in_dim) if in_dim else 0.0
        self.weight = nn.Parameter(torch.empty(n_agents, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_agents, out_dim).uniform_(-bound, bound))

    def forward(self, x, agent_ids=None):
        w, b = self.weight, self.bias
        if agent_ids is not None:
            w, b = w[agent_ids], b[agent_ids]
        check_shape("BatchedLinear input", x, (None, w.shape[0], self.in_dim))
        # (n, B, in) @ (n, in, out) -> (n, B, out): one bmm for all agents
        return torch.bmm(x.transpose(0, 1), w).transpose(0, 1) + b


class AgentMLP(nn.Module):
    """MLP for each of N agents: (B, n, in_dim) -> (B, n, out_dim).

    ``shared=False``: separate weights per agent (BatchedLinear).  ``shared=True``: one MLP for
    all, fed [x, embedding(agent_id)] when ``id_embed_dim`` > 0.  ``hidden=()`` gives one layer.
    """

    def __init__(self, n_agents, in_dim, out_dim, hidden=(64, 64), shared=False, id_embed_dim=0,
                 activation="relu", out_activation=None):
        super().__init__()
        self.n_agents, self.in_dim, self.out_dim = n_agents, in_dim, out_dim
        self.shared = shared
        self.id_embed = nn.Embedding(n_agents, id_embed_dim) if shared and id_embed_dim else None
        dims = [in_dim + (id_embed_dim if self.id_embed is not None else 0), *hidden, out_dim]
        make = (lambda i, o: nn.Linear(i, o)) if shared else (lambda i, o: BatchedLinear(n_agents, i, o))
        self.layers = nn.ModuleList(make(i, o) for i, o in zip(dims[:-1], dims[1:]))
        self.act = ACTIVATIONS[activation]()
        self.out_act = ACTIVATIONS[out_activation]() if out_activation else nn.Identity()

    def forward(self, x, agent_ids=None):
        n = self.n_agents if agent_ids is None else len(agent_ids)
        check_shape("AgentMLP input", x, (None, n, self.in_dim))
        for k, layer in enumerate(self.layers):
            if k == 0 and self.id_embed is not None:  # W [x; id] = W_x x + W_id id: the id part once per agent,
                ids = torch.arange(self.n_agents) if agent_ids is None else agent_ids  # not concatenated per sample
                w_x, w_id = layer.weight.split([self.in_dim, layer.in_features - self.in_dim], dim=1)
                x = F.linear(x, w_x, layer.bias) + F.linear(self.id_embed(ids), w_id)
            else:
                x = layer(x) if self.shared else layer(x, agent_ids)
            x = self.act(x) if k < len(self.layers) - 1 else self.out_act(x)
        return x


class Actor(nn.Module):
    """Decentralized actors of N agents on local observations, batched.

    ``head='gaussian'``: a ~ low + (tanh(u) + 1)/2 (high - low), u ~ N(mu, sigma) (reparameterized);
    ``head='deterministic'``: u = mu.  ``mean_action`` is the deterministic action of both.
    ``min_std`` is added to the Gaussian's standard deviation, a floor that keeps it exploring: one value for every
    action column, or one per column (e.g. a wider floor on the columns left to the critic).
    """

    def __init__(self, n_agents, obs_dim, act_dim, hidden=(64, 64), head="gaussian", shared=False,
                 id_embed_dim=8, action_low=ACTION_LOW, action_high=ACTION_HIGH, log_std_bounds=(-5.0, 1.0),
                 min_std=0.0):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head: {head!r} is not one of {list(HEADS)}")
        if len(action_low) != act_dim or len(action_high) != act_dim:
            raise ValueError(f"action bounds: expected {act_dim} values each, got {len(action_low)}, "
                             f"{len(action_high)}")
        floor = torch.as_tensor(min_std, dtype=torch.float32)
        scalar = floor.ndim == 0
        floor = floor.expand(act_dim).clone() if scalar else floor
        if floor.shape != (act_dim,) or not bool(torch.isfinite(floor).all() and (floor >= 0).all()):
            raise ValueError(f"min_std: expected one finite value >= 0 or {act_dim} of them, got {min_std!r}")
        self.spec = dict(n_agents=n_agents, obs_dim=obs_dim, act_dim=act_dim, hidden=list(hidden), head=head,
                         shared=shared, id_embed_dim=id_embed_dim, action_low=list(map(float, action_low)),
                         action_high=list(map(float, action_high)), log_std_bounds=list(log_std_bounds),
                         min_std=float(min_std) if scalar else floor.tolist())
        self.n_agents, self.obs_dim, self.act_dim, self.head = n_agents, obs_dim, act_dim, head
        out = 2 * act_dim if head == "gaussian" else act_dim
        self.body = AgentMLP(n_agents, obs_dim, out, hidden, shared=shared, id_embed_dim=id_embed_dim)
        self.register_buffer("low", torch.tensor(action_low, dtype=torch.float32))
        self.register_buffer("high", torch.tensor(action_high, dtype=torch.float32))
        self.log_std_bounds = log_std_bounds
        # not in the state dict: the spec carries it, and actors saved before it existed still load
        self.register_buffer("min_std", floor, persistent=False)

    def forward(self, obs, agent_ids=None):
        """Pre-squash mean mu (B, n, A) and log-std (B, n, A) (None for a deterministic head)."""
        out = self.body(obs, agent_ids)
        if self.head == "deterministic":
            return out, None
        mu, log_std = out.split(self.act_dim, dim=-1)
        lo, hi = self.log_std_bounds
        # soft clamp keeps gradients alive at the bounds (as in SAC implementations)
        log_std = lo + 0.5 * (hi - lo) * (torch.tanh(log_std) + 1.0)
        return mu, log_std

    def scale(self, a_norm):
        """[-1, 1] -> [low, high]."""
        return self.low + 0.5 * (a_norm + 1.0) * (self.high - self.low)

    def normalize(self, action):
        """[low, high] -> [-1, 1]."""
        return 2.0 * (action - self.low) / (self.high - self.low) - 1.0

    def mean_action(self, obs, agent_ids=None):
        mu, _ = self(obs, agent_ids)
        return self.scale(torch.tanh(mu))

    def sample(self, obs, agent_ids=None):
        """Action (B, n, A) with gradient (reparameterized) and log-prob (B, n) (None if deterministic)."""
        mu, log_std = self(obs, agent_ids)
        if log_std is None:
            return self.scale(torch.tanh(mu)), None
        std = self.std(log_std)
        u = mu + std * torch.randn_like(mu)
        t = torch.tanh(u)
        log_prob = torch.distributions.Normal(mu, std).log_prob(u)
        # change of variables through tanh and the affine scaling to [low, high]
        log_prob = log_prob - torch.log((1.0 - t.pow(2)).clamp_min(1e-6)) - torch.log(0.5 * (self.high - self.low))
        return self.scale(t), log_prob.sum(-1)

    def std(self, log_std):
        """Standard deviation (before tanh) of the Gaussian head: exp(log_std) + min_std."""
        return log_std.exp() + self.min_std

    def imitation_loss(self, obs, expert_action, agent_ids=None, spread=True, weight=None):
        """Distance to expert actions (B, n), summed over action dimensions, normalized [-1, 1] space.

        ``weight`` (A,): factor of each action dimension's term (0 leaves it out; None = 1 each).

        Gaussian head: W2² between the policy and the deterministic expert, the squashed policy
        taken as the Gaussian N(tanh mu, (sigma (1 - tanh² mu))²) (first-order delta method);
        ``spread=False`` or a deterministic head: the squared error of the mean.
        """
        check_shape("expert_action", expert_action, (None, obs.shape[1], self.act_dim))
        mu, log_std = self(obs, agent_ids)
        m = torch.tanh(mu)
        target = self.normalize(expert_action)
        if log_std is None or not spread:
            return wasserstein_imitation(m, torch.zeros_like(m), target, weight)
        return wasserstein_imitation(m, self.std(log_std) * (1.0 - m.pow(2)), target, weight)

"""Centralized critics Q_i(s, a) for all agents at once: ``critic(obs, act, state, act_self) -> q (B, N)``.

obs (B, N, F), act (B, N, A) the joint action, state (B, S) the global state (only the MLP
critic reads it).  ``act_self`` (B, N, A), when given, replaces each agent's *own* action while
the other agents keep ``act``: Q_i(s, a_1..act_self_i..a_N).  The actor update uses it so that
actor i follows the gradient of its own Q_i with the others' actions from the replay buffer (as
in MADDPG), without N forward passes.

- ``AttentionCritic`` (MAAC layout): e_j = g(o_j, a_j), s_i = f(o_i);
  x_i = attention(query s_i, keys/values e_j, j != i); Q_i = head([e_i, x_i]).
  ``attention='diff'`` is the proposed differential attention, ``'softmax'`` MAAC's.
  With ``groups`` (one neighbourhood label per agent, e.g. its LV feeder) it scales to thousands
  of agents in two levels: x_i attends only within i's group (attention.py), and the groups'
  mean embeddings attend over each other (feeder -> grid, G x G), giving g_i to every member,
  so market-wide supply and demand stay visible; Q_i = head([e_i, x_i, g_i]).  With one group (everyone a
  neighbour) there is no second level and the critic is exactly the full-attention one.
- ``MLPCritic``: one MLP on [global state, joint action] with one output per agent (MADDPG/MATD3).
- ``LocalCritic``: Q_i(o_i, a_i), independent learners (IDDPG).
"""

import torch
from torch import nn

from agents.marl.attention import ATTENTIONS
from agents.marl.networks import ACTIVATIONS, AgentMLP, check_shape


class AttentionCritic(nn.Module):
    def __init__(self, n_agents, obs_dim, act_dim, state_dim=0, embed_dim=64, n_heads=4, attention="diff",
                 depth=0, shared=True, id_embed_dim=0, groups=None):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention: {attention!r} is not one of {sorted(ATTENTIONS)}")
        self.n_agents, self.obs_dim, self.act_dim = n_agents, obs_dim, act_dim
        kw = dict(shared=shared, id_embed_dim=id_embed_dim, out_activation="leaky_relu", activation="leaky_relu")
        self.sa_encoder = AgentMLP(n_agents, obs_dim + act_dim, embed_dim, hidden=(), **kw)
        self.s_encoder = AgentMLP(n_agents, obs_dim, embed_dim, hidden=(), **kw)
        self.attention = ATTENTIONS[attention](embed_dim, n_heads, depth=depth, self_mask=True, groups=groups)
        self.grid_attention = None
        labels = None if groups is None else torch.unique(torch.as_tensor(groups).long(), return_inverse=True)[1]
        if labels is not None and labels.max() > 0:  # second level: every agent reads the groups' mean embeddings
            self.register_buffer("group_of", labels, persistent=False)
            self.register_buffer("group_size", torch.bincount(labels).float(), persistent=False)
            self.grid_attention = ATTENTIONS[attention](embed_dim, n_heads, depth=depth, self_mask=False)
        levels = 2 if self.grid_attention is None else 3
        self.head = AgentMLP(n_agents, levels * embed_dim, 1, hidden=(embed_dim,), shared=shared,
                             id_embed_dim=id_embed_dim, activation="leaky_relu")

    def forward(self, obs, act, state=None, act_self=None, need_weights=False, blocks=None):
        """q (B, N); with ``blocks`` (ids of neighbourhood blocks, see AgentBlocks.subset) q (B, n) of
        only the n agents in those blocks, in agent order, equal to those columns of the full q.

        The feeder -> grid level still reads every agent, but with ``blocks`` the other blocks'
        embeddings enter the feeder means as constants: the values are exact, and the gradient
        reaches the encoders through the drawn agents only (the other feeders are context for
        this update), so an update costs a block's backward pass, not all N agents'."""
        _check_inputs(self, obs, act, act_self)
        layout, agents = None, None
        if blocks is not None:
            if self.attention.blocks is None:
                raise ValueError("blocks: this critic has no neighbourhoods (groups=None), so no blocks to choose")
            layout = self.attention.blocks.subset(blocks)
            agents = layout.agents
        pick = (lambda x: x) if agents is None else (lambda x: x[:, agents])
        e = self.sa_encoder(torch.cat([pick(obs), pick(act)], dim=-1), agents)
        s = self.s_encoder(pick(obs), agents)
        x, weights = self.attention(s, e, e, need_weights=need_weights, layout=layout)
        levels = [x]
        if self.grid_attention is not None:
            levels.append(self._grid_level(s, self._group_sums(obs, act, e, agents), agents))
        e_self = e if act_self is None else self.sa_encoder(torch.cat([pick(obs), pick(act_self)], dim=-1), agents)
        q = self.head(torch.cat([e_self, *levels], dim=-1), agents).squeeze(-1)
        return (q, weights) if need_weights else q

    def n_blocks(self):
        """Neighbourhood blocks the ``blocks`` argument chooses from (0 without neighbourhoods)."""
        return 0 if self.attention.blocks is None else self.attention.blocks.n_blocks

    def _group_sums(self, obs, act, e, agents):
        """(B, G, E) sums of every group's e-embeddings; ``e`` holds ``agents`` (default all), the
        other agents' embeddings are computed here without gradient."""
        b, n_all, _ = obs.shape
        sums = e.new_zeros(b, len(self.group_size), e.shape[-1])
        if agents is not None:
            rest = torch.ones(n_all, dtype=torch.bool)
            rest[agents] = False
            rest = torch.nonzero(rest).squeeze(1)
            with torch.no_grad():
                sums.index_add_(1, self.group_of[rest],
                                self.sa_encoder(torch.cat([obs[:, rest], act[:, rest]], dim=-1), rest))
        return sums.index_add(1, self.group_of if agents is None else self.group_of[agents], e)

    def _grid_level(self, s, sums, agents=None):
        """Feeder -> grid: each group's mean s-embedding attends over every group's mean e-embedding
        (G x G per sample; ``sums`` (B, G, E) of the e-embeddings), and each agent reads its own
        group's result: (B, n, E).  ``s`` (B, n, E) holds ``agents`` (default all), which are whole
        groups, so only their groups are queried."""
        pooled = sums / self.group_size.view(1, -1, 1)
        group = self.group_of if agents is None else self.group_of[agents]
        asked, member = torch.unique(group, return_inverse=True)  # the groups queried; each agent's among them
        query = s.new_zeros(s.shape[0], len(asked), s.shape[-1]).index_add_(1, member, s)
        out, _ = self.grid_attention(query / self.group_size[asked].view(1, -1, 1), pooled, pooled)
        return out[:, member]


class MLPCritic(nn.Module):
    """Q (B, N) = MLP([state, joint action]); the global state defaults to all observations."""

    def __init__(self, n_agents, obs_dim, act_dim, state_dim=0, hidden=(128, 128), activation="relu"):
        super().__init__()
        self.n_agents, self.obs_dim, self.act_dim, self.state_dim = n_agents, obs_dim, act_dim, state_dim
        g_dim = state_dim or n_agents * obs_dim
        # the first layer is split so that swapping one agent's action is a cheap rank-A update
        self.w_state = nn.Linear(g_dim, hidden[0])
        self.w_action = nn.Parameter(torch.empty(n_agents, act_dim, hidden[0]).uniform_(-0.05, 0.05))
        dims = [*hidden, n_agents]
        self.trunk = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims[:-1], dims[1:]))
        self.act = ACTIVATIONS[activation]()

    def forward(self, obs, act, state=None, act_self=None):
        _check_inputs(self, obs, act, act_self)
        if self.state_dim:
            if state is None:
                raise ValueError(f"state: expected shape (*, {self.state_dim}), got None")
            check_shape("state", state, (obs.shape[0], self.state_dim))
            g = state
        else:
            g = obs.flatten(1)
        h = self.w_state(g) + torch.einsum("bna,nah->bh", act, self.w_action)  # (B, H)
        if act_self is None:
            return self._tail(h)
        # row i: the joint action with agent i's own action swapped for act_self_i
        h = h.unsqueeze(1) + torch.einsum("bna,nah->bnh", act_self - act, self.w_action)  # (B, N, H)
        return self._tail(h).diagonal(dim1=1, dim2=2)

    def _tail(self, h):
        for layer in self.trunk:
            h = layer(self.act(h))
        return h


class LocalCritic(nn.Module):
    """Q_i(o_i, a_i) per agent (no centralization); ``state`` and the others' actions are unused."""

    def __init__(self, n_agents, obs_dim, act_dim, state_dim=0, hidden=(64, 64), shared=False, id_embed_dim=0):
        super().__init__()
        self.n_agents, self.obs_dim, self.act_dim = n_agents, obs_dim, act_dim
        self.net = AgentMLP(n_agents, obs_dim + act_dim, 1, hidden, shared=shared, id_embed_dim=id_embed_dim)

    def forward(self, obs, act, state=None, act_self=None):
        _check_inputs(self, obs, act, act_self)
        own = act if act_self is None else act_self
        return self.net(torch.cat([obs, own], dim=-1)).squeeze(-1)


class CriticEnsemble(nn.Module):
    """K critics of one kind (K = 2: TD3's twin critics); forward -> (K, B, N)."""

    def __init__(self, make, k):
        super().__init__()
        self.members = nn.ModuleList(make() for _ in range(k))

    def forward(self, obs, act, state=None, act_self=None, blocks=None):
        """``blocks``: attention critics with neighbourhoods only (AttentionCritic.forward)."""
        kw = {} if blocks is None else {"blocks": blocks}
        return torch.stack([m(obs, act, state, act_self, **kw) for m in self.members])

    def first(self, obs, act, state=None, act_self=None):
        """Q of the first critic only (TD3's actor uses Q1)."""
        return self.members[0](obs, act, state, act_self)


def _check_inputs(critic, obs, act, act_self):
    check_shape("obs", obs, (None, critic.n_agents, critic.obs_dim))
    check_shape("act", act, (obs.shape[0], critic.n_agents, critic.act_dim))
    if act_self is not None:
        check_shape("act_self", act_self, tuple(act.shape))


CRITICS = {
    "diffattn": lambda *a, **kw: AttentionCritic(*a, attention="diff", **kw),
    "softmax_attn": lambda *a, **kw: AttentionCritic(*a, attention="softmax", **kw),
    "mlp": MLPCritic,
    "local": LocalCritic,
}

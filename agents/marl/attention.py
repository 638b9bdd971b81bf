"""Multi-head attention over agents, vectorized: (batch, agents, features), no loops over agents/heads.

Both modules share one interface, ``attn(query, key, value, need_weights=False) -> (out, weights)``
with query (B, N, E), key/value (B, M, E) (M = N with self_mask or neighbourhoods) and out
(B, N, E); ``weights`` (B, H, N, M) when asked for.
With ``self_mask=True`` a boolean eye mask removes each agent from its own attention, so
agent i's output is built from the other agents' keys and values only (as in MAAC's critic).

- ``DifferentialMultiHeadAttention`` (Differential Transformer, arXiv 2410.05258):
  [Q1;Q2] = X W_Q, [K1;K2] = X W_K, V = X W_V (2d per head),
  A = softmax(Q1 K1ᵀ/√d) - λ softmax(Q2 K2ᵀ/√d), head = RMSNorm(A V) · (1 - λ_init),
  λ = exp(λq1·λk1) - exp(λq2·λk2) + λ_init per head, λ_init = 0.8 - 0.6 exp(-0.3 depth).
- ``SoftmaxMultiHeadAttention``: MAAC's scaled dot-product attention (values through LeakyReLU).

Neighbourhoods (``groups``, one label per agent, e.g. the LV feeder of its bus): agent i then
attends only to agents of its own group.  That is full attention with a block-diagonal mask, but
computed block by block (whole groups packed into padded blocks of BLOCK_SIZE agents), so it
costs O(N·BLOCK_SIZE) instead of O(N²).  An agent alone in its group attends to itself (the only
key it has).  One group holding every agent is exactly full attention
(tests/test_scale_critic.py).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from agents.marl.networks import check_shape


def lambda_init(depth):
    """λ_init of the Differential Transformer for a layer at ``depth`` (0-based layer index)."""
    return 0.8 - 0.6 * math.exp(-0.3 * depth)


def _self_mask(n, device):
    return torch.eye(n, dtype=torch.bool, device=device)


def _masked_softmax(scores, mask):
    """Softmax over the last axis with ``mask`` (N, N) True = excluded."""
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


BLOCK_SIZE = 128
"""agents per attention block: whole neighbourhoods are packed into blocks of this size (or of the
largest neighbourhood's size, if larger), so the fused kernel runs a few 128-agent problems, not
one tiny problem per neighbourhood (at 1000 agents in 89 feeders of at most 30 that was 5x slower)"""


class AgentBlocks(nn.Module):
    """Layout of N agents in padded blocks of whole groups (see the module doc); buffers only.

    Groups are packed first-fit, largest first, into ``n_blocks`` blocks of ``block`` slots.
    ``slot`` (N,): each agent's position in the flattened (n_blocks·block) slots; ``index``: the
    agent at each slot (0 at padding); ``excluded`` (n_blocks, block, block): True where query slot
    r may not attend key slot c (another group, padding, its own slot with self_mask);
    ``full_excluded`` (N, N): the same as an N x N mask (explicit maps for need_weights).
    """

    def __init__(self, groups, self_mask, block_size=BLOCK_SIZE):
        super().__init__()
        labels = torch.unique(torch.as_tensor(groups).long(), return_inverse=True)[1]
        n = len(labels)
        sizes = torch.bincount(labels).tolist()
        s = max(block_size, max(sizes))
        fill, home = [], {}  # agents in each block so far; group -> its block
        for grp in sorted(range(len(sizes)), key=lambda j: -sizes[j]):
            home[grp] = next((i for i, used in enumerate(fill) if used + sizes[grp] <= s), len(fill))
            if home[grp] == len(fill):
                fill.append(0)
            fill[home[grp]] += sizes[grp]
        slot, used = torch.empty(n, dtype=torch.long), [0] * len(fill)
        for agent, grp in enumerate(labels.tolist()):
            slot[agent] = home[grp] * s + used[home[grp]]
            used[home[grp]] += 1
        nb = len(fill)
        index = torch.zeros(nb * s, dtype=torch.long)
        index[slot] = torch.arange(n)
        group_at = torch.full((nb * s,), -1, dtype=torch.long)  # -1: padding
        group_at[slot] = labels
        self._set(s, slot, index, _excluded(group_at.view(nb, s), self_mask), _excluded(labels.view(1, n), self_mask)[0],
                  torch.arange(n))

    def _set(self, block, slot, index, excluded, full_excluded, agents):
        self.n_agents, self.n_blocks, self.block = len(slot), len(excluded), block
        tables = {"slot": slot, "index": index, "excluded": excluded, "full_excluded": full_excluded,
                  "agents": agents}  # agents: the ids (in the full layout) of the agents this layout holds
        for name, value in tables.items():
            self.register_buffer(name, value, persistent=False)

    def subset(self, block_ids):
        """The layout of only the agents in blocks ``block_ids`` (whole groups, so attention within
        them is unchanged), ordered by agent id; their ids in ``agents``.  The critic's TD loss over
        a random subset of blocks is an unbiased estimate of the loss over all agents at a cost set by
        the block size, not by N."""
        block_ids = torch.unique(torch.as_tensor(block_ids).long())
        if len(block_ids) == 0 or block_ids.min() < 0 or block_ids.max() >= self.n_blocks:
            raise ValueError(f"block_ids: expected 1 or more of 0..{self.n_blocks - 1}, got {block_ids.tolist()}")
        s = self.block
        agents = torch.nonzero(torch.isin(self.slot // s, block_ids)).squeeze(1)
        renumber = torch.full((self.n_blocks,), -1, dtype=torch.long)
        renumber[block_ids] = torch.arange(len(block_ids))
        slot = renumber[self.slot[agents] // s] * s + self.slot[agents] % s
        index = torch.zeros(len(block_ids) * s, dtype=torch.long)
        index[slot] = torch.arange(len(agents))
        out = AgentBlocks.__new__(AgentBlocks)
        nn.Module.__init__(out)
        out._set(s, slot, index, self.excluded[block_ids], self.full_excluded[agents][:, agents], agents)
        return out

    def attend(self, q, k, v, scale):
        """softmax(q kᵀ · scale) v within each group: q, k (B, H, N, d), v (B, H, N, dv) -> (B, H, N, dv)."""
        b, h, n, dv = v.shape
        nb, s = self.n_blocks, self.block

        def blocks(x):  # (B, H, N, d) -> (B·nb, H, S, d): 4-D, so torch's fused CPU kernel applies
            return x[:, :, self.index].view(b, h, nb, s, x.shape[-1]).transpose(1, 2).reshape(b * nb, h, s, -1)

        mask = self.excluded.unsqueeze(1).expand(nb, 1, s, s).repeat(b, 1, 1, 1)  # (B·nb, 1, S, S)
        out = _fused_attention(blocks(q), blocks(k), blocks(v), mask, scale)
        return out.view(b, nb, h, s, dv).transpose(1, 2).reshape(b, h, nb * s, dv)[:, :, self.slot]


def _excluded(group_at, self_mask):
    """(n_blocks, S, S) True where query slot r may not attend key slot c, from each slot's group
    (-1 = padding): another group or padding, and its own slot with self_mask; a slot with no
    other key left (alone in its group, or padding) attends to itself."""
    eye = torch.eye(group_at.shape[1], dtype=torch.bool)
    out = (group_at.unsqueeze(2) != group_at.unsqueeze(1)) | (group_at.unsqueeze(1) < 0)
    if self_mask:
        out = out | eye
    return out & ~(out.all(-1, keepdim=True) & eye)


def _fused_attention(q, k, v, mask, scale):
    """softmax(q kᵀ · scale, mask) v without materializing the (N, N) maps (torch's fused kernel).

    q, k are zero-padded to v's width: dot products do not change, and the flash kernel (which
    wants one width) applies; at 100 agents it is ~4x faster than the explicit maps.
    """
    pad = v.shape[-1] - q.shape[-1]
    if pad > 0:
        q, k = F.pad(q, (0, pad)), F.pad(k, (0, pad))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else ~mask, scale=scale)


class _AgentAttention(nn.Module):
    """Shape checks, the eye mask and the neighbourhood blocks shared by both attention kinds."""

    def __init__(self, embed_dim, n_heads, self_mask, groups=None):
        super().__init__()
        self.embed_dim, self.n_heads, self.self_mask = embed_dim, n_heads, self_mask
        self.blocks = None if groups is None else AgentBlocks(groups, self_mask)

    def _check(self, query, key, value, blocks):
        """(B, N, M, mask) after checking shapes: keys may differ in number from queries only
        without self mask and neighbourhoods (e.g. agents reading group summaries)."""
        check_shape("query", query, (None, None if blocks is None else blocks.n_agents, self.embed_dim))
        b, n, _ = query.shape
        same = self.self_mask or blocks is not None
        check_shape("key", key, (b, n if same else None, self.embed_dim))
        m = key.shape[1]
        check_shape("value", value, (b, m, self.embed_dim))
        if blocks is not None:
            return b, n, m, blocks.full_excluded
        if self.self_mask and n < 2:
            raise ValueError(f"agents: expected at least 2 agents with self_mask=True, got {n}")
        return b, n, m, (_self_mask(n, query.device) if self.self_mask else None)

    def _attend(self, q, k, v, mask, scale, blocks):
        """softmax(q kᵀ · scale, mask) v, block by block when the agents have neighbourhoods."""
        if blocks is not None:
            return blocks.attend(q, k, v, scale)
        return _fused_attention(q, k, v, mask, scale)


class DifferentialMultiHeadAttention(_AgentAttention):
    """Differential multi-head attention over agents; ``embed_dim`` must be divisible by 2·n_heads."""

    def __init__(self, embed_dim, n_heads, depth=0, self_mask=True, groups=None):
        super().__init__(embed_dim, n_heads, self_mask, groups)
        if embed_dim % (2 * n_heads):
            raise ValueError(f"embed_dim: expected a multiple of 2*n_heads = {2 * n_heads}, got {embed_dim}")
        self.head_dim = d = embed_dim // n_heads // 2
        self.depth, self.lambda_init = depth, lambda_init(depth)
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=False)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=False)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=False)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=False)
        self.lambda_q1, self.lambda_k1, self.lambda_q2, self.lambda_k2 = (
            nn.Parameter(torch.randn(n_heads, d) * 0.1) for _ in range(4))
        self.head_norm = nn.RMSNorm(2 * d, eps=1e-5)

    def lambda_full(self):
        """λ per head (H,): exp(λq1·λk1) - exp(λq2·λk2) + λ_init."""
        l1 = torch.exp((self.lambda_q1 * self.lambda_k1).sum(-1))
        l2 = torch.exp((self.lambda_q2 * self.lambda_k2).sum(-1))
        return l1 - l2 + self.lambda_init

    def forward(self, query, key, value, need_weights=False, layout=None):
        """``layout``: a subset of this module's neighbourhood blocks (AgentBlocks.subset) whose
        agents alone are given as query, key and value; default: every agent."""
        blocks = self.blocks if layout is None else layout
        b, n, m, mask = self._check(query, key, value, blocks)
        h, d = self.n_heads, self.head_dim
        # (B, N, E) -> (B, H, 2, N, d): two query/key groups per head
        q = self.q_proj(query).view(b, n, h, 2, d).permute(0, 2, 3, 1, 4)
        k = self.k_proj(key).view(b, m, h, 2, d).permute(0, 2, 3, 1, 4)
        v = self.v_proj(value).view(b, m, h, 2 * d).transpose(1, 2)  # (B, H, M, 2d)
        lam = self.lambda_full().view(1, h, 1, 1)
        weights = None
        if need_weights:  # explicit maps, only when asked for (tests, inspection)
            maps = _masked_softmax(q @ k.transpose(-1, -2) / math.sqrt(d), mask)  # (B, H, 2, N, N)
            weights = maps[:, :, 0] - lam * maps[:, :, 1]  # (B, H, N, N)
            y = weights @ v
        else:  # A V = softmax1 V - λ softmax2 V: both groups as 2H heads of one fused call
            v2 = v.unsqueeze(2).expand(b, h, 2, m, 2 * d).reshape(b, 2 * h, m, 2 * d)
            o = self._attend(q.reshape(b, 2 * h, n, d), k.reshape(b, 2 * h, m, d), v2, mask, 1.0 / math.sqrt(d), blocks)
            o = o.view(b, h, 2, n, 2 * d)
            y = o[:, :, 0] - lam * o[:, :, 1]
        heads = self.head_norm(y) * (1.0 - self.lambda_init)  # per-head RMSNorm over 2d
        out = self.out_proj(heads.transpose(1, 2).reshape(b, n, self.embed_dim))
        return out, weights


class SoftmaxMultiHeadAttention(_AgentAttention):
    """Scaled dot-product multi-head attention over agents (MAAC's critic attention).

    ``depth`` is accepted so both kinds share one constructor; plain softmax attention has no λ.
    """

    def __init__(self, embed_dim, n_heads, depth=0, self_mask=True, groups=None):
        super().__init__(embed_dim, n_heads, self_mask, groups)
        if embed_dim % n_heads:
            raise ValueError(f"embed_dim: expected a multiple of n_heads = {n_heads}, got {embed_dim}")
        self.head_dim = embed_dim // n_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=False)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=False)
        self.v_proj = nn.Sequential(nn.Linear(embed_dim, embed_dim, bias=False), nn.LeakyReLU())
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=False)

    def forward(self, query, key, value, need_weights=False, layout=None):
        """``layout``: a subset of this module's neighbourhood blocks (AgentBlocks.subset) whose
        agents alone are given as query, key and value; default: every agent."""
        blocks = self.blocks if layout is None else layout
        b, n, m, mask = self._check(query, key, value, blocks)
        h, d = self.n_heads, self.head_dim
        q = self.q_proj(query).view(b, n, h, d).transpose(1, 2)  # (B, H, N, d)
        k = self.k_proj(key).view(b, m, h, d).transpose(1, 2)
        v = self.v_proj(value).view(b, m, h, d).transpose(1, 2)
        weights = None
        if need_weights:
            weights = _masked_softmax(q @ k.transpose(-1, -2) / math.sqrt(d), mask)  # (B, H, N, N)
            y = weights @ v
        else:
            y = self._attend(q, k, v, mask, 1.0 / math.sqrt(d), blocks)
        out = self.out_proj(y.transpose(1, 2).reshape(b, n, self.embed_dim))
        return out, weights


ATTENTIONS = {"diff": DifferentialMultiHeadAttention, "softmax": SoftmaxMultiHeadAttention}

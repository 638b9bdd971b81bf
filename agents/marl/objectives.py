"""Actor objectives: how an actor improves on the critic while it keeps close to the expert.

Every objective is ``f(learner, batch, imitation, beta) -> (loss, metrics)`` for a step in which
the Q term is on; an imitating algorithm adds β · D(π, a_E), D the imitation distance averaged
over the imitated action dimensions (so that the weights mean what they mean in TD3+BC; the columns of
``critic_actions`` are left to the Q term alone):

- ``q`` (DDPG / TD3, and TD3+BC for imitating algorithms): agent i follows its own Q_i with the
  others' actions from the replay, L = -α Q_1(s, a_-i, π_i(o_i)) / mean|Q| + β D
  (α = q_weight; without imitation L = -Q, plus α_H log π for soft-Q algorithms).  With a reward model
  (TrainConfig.critic_actions_value 'reward') the critic_actions columns follow r̂_i(s, a_-i, π_i(o_i)) instead
  of Q_1 and the other columns Q_1 alone, both over the same mean|Q_1|: for a column whose effect ends with the
  step, ∂Q/∂a = ∂E[r]/∂a, and r̂ learns it from one-step targets rather than day-long TD ones;
- ``awac`` (advantage-weighted actor-critic, Nair et al. 2020, in its fixed-variance form):
  L = mean over replay (s, a) of w · |μ_i(o_i) - atanh(a_i)|² / A + β D (μ before tanh), with
  w = exp(A_i / (λ mean|A_i|)) clipped at awac_max_weight and normalized to mean 1 over the
  batch, A_i = min_k Q_k(s, a) - min_k Q_k(s, a_-i, μ_i(o_i)) from the twin critics.  It moves the
  policy only toward actions the data holds (the demonstrations and the actors' own explored
  ones) and weighs them by how much better than the policy the critics think they are, so it
  cannot leave the data's support the way the gradient of an extrapolating critic can;
- ``awac_columns``: ``awac`` on the ``critic_actions`` columns alone (their advantage with the policy's mean on the
  other columns, their regression alone), the other columns held by the imitation term.

Imitation distances (``IMITATION_LOSSES``): ``w2`` the Wasserstein-2 distance of the squashed
Gaussian to the expert action (it shrinks the spread with the error); ``mean`` the squared
error of the mean only, so that the spread keeps exploring (with the actor's min_std floor).
"""

import torch

IMITATION_LOSSES = ("w2", "mean")
PRE_TANH_CLIP = 0.995
"""actions at a bound are regressed to atanh(±0.995) ≈ ±3 before the squashing"""


def imitation_distance(actor, obs, expert_action, kind, weight=None):
    """D(π(o), a_E) (B, N): the imitation distance averaged over the imitated action dimensions, normalized space.

    ``weight`` (A,) of 0/1: the dimensions imitated (None = all; TrainConfig.critic_actions leaves some to the critic).
    """
    dims = actor.act_dim if weight is None else weight.sum().clamp_min(1.0)
    return actor.imitation_loss(obs, expert_action, spread=kind == "w2", weight=weight) / dims


def q_objective(learner, b, imitation, beta):
    cfg, algo = learner.cfg, learner.algo
    act, logp = learner.actor.sample(b["obs"])
    q, r = _q_and_reward(learner, b, act)
    value = q + r  # r = 0 without a reward model; with one, each term carries the gradient of its own columns
    metrics = {"actor_q": q.mean().item()}
    if algo.imitation:
        scale = q.abs().mean().detach().clamp_min(1e-6) if cfg.q_normalize else 1.0
        loss = -cfg.q_weight * (value / scale).mean()
        il = imitation_distance(learner.actor, *imitation, cfg.imitation_loss, learner.imitation_weight).mean()
        metrics["imitation_loss"] = il.item()
        return loss + beta * il, metrics
    rl = -value + (cfg.entropy_coef * logp if algo.entropy else 0.0)
    return rl.mean(), metrics


def _q_and_reward(learner, b, act):
    """(Q_1, r̂) (B, N) of the actor's actions ``act`` with the others' from the replay; the actor step must not
    leave gradients in either network.  Without a reward model r̂ = 0 and Q_1 sees every column; with one, Q_1 the
    imitated columns and r̂ the critic_actions ones (the other columns held at ``act`` without gradient)."""
    obs, replay, state = b["obs"], b["act"], b.get("state")
    model = learner.reward_model
    free = None if model is None else learner.critic_columns == 0
    learner.critic.requires_grad_(False)
    q = learner.critic.first(obs, replay, state, act_self=act if free is None else torch.where(free, act.detach(), act))
    learner.critic.requires_grad_(True)
    if model is None:
        return q, torch.zeros_like(q)
    model.requires_grad_(False)
    r = model.first(obs, replay, state, act_self=torch.where(free, act, act.detach()))
    model.requires_grad_(True)
    return q, r


def awac_objective(learner, b, imitation, beta):
    return _awac(learner, b, imitation, beta, columns=None)


def awac_columns_objective(learner, b, imitation, beta):
    """AWAC on the critic_actions columns alone: the other columns keep the policy's mean in the advantage and are
    left to the imitation term, so the regression toward replayed actions cannot pull the imitated columns."""
    return _awac(learner, b, imitation, beta, columns=learner.critic_columns == 0)


def _awac(learner, b, imitation, beta, columns):
    """``columns`` (A,) bool: the action columns regressed and varied in the advantage (None = all)."""
    cfg, actor = learner.cfg, learner.actor
    with torch.no_grad():
        state = b.get("state")
        mean = actor.mean_action(b["obs"])
        if columns is None:
            q_data = learner.critic(b["obs"], b["act"], state).min(dim=0).values
        else:  # the replayed action on the columns, the policy's mean elsewhere
            q_data = learner.critic(b["obs"], b["act"], state,
                                    act_self=torch.where(columns, b["act"], mean)).min(dim=0).values
        q_pi = learner.critic(b["obs"], b["act"], state, act_self=mean).min(dim=0).values
        adv = q_data - q_pi
        w = torch.exp(adv / (cfg.awac_temperature * adv.abs().mean().clamp_min(1e-6))).clamp_max(cfg.awac_max_weight)
        w = w / w.mean()
    mu, _ = actor(b["obs"])
    # the Gaussian's log-likelihood with a fixed spread is a squared error *before* tanh: after it, the
    # actor's own explored actions near a bound lie all on one side and would drag the mean inward
    target = torch.atanh(actor.normalize(b["act"]).clamp(-PRE_TANH_CLIP, PRE_TANH_CLIP))
    squared = (mu - target).pow(2)
    if columns is None:
        regression = squared.mean(-1)
    else:  # weighted by the share handed over so far (critic_handover_steps), averaged over the columns
        regression = learner.handover * (squared * columns).sum(-1) / columns.sum()
    loss = (w * regression).mean()
    il = imitation_distance(actor, *imitation, cfg.imitation_loss, learner.imitation_weight).mean()
    metrics = {"actor_q": q_pi.mean().item(), "advantage": adv.mean().item(), "awac_weight_max": w.max().item(),
               "imitation_loss": il.item()}
    return loss + beta * il, metrics


OBJECTIVES = {"q": q_objective, "awac": awac_objective, "awac_columns": awac_columns_objective}
"""actor_objective name -> f(learner, batch, imitation, beta) -> (loss, metrics)"""

"""Imitation distances and annealing schedules.

Wasserstein-2 between a diagonal Gaussian policy N(mu, diag sigma²) and a deterministic expert
action a_E (a Dirac): W2² = ||mu - a_E||² + sum sigma².  It is zero exactly when mu = a_E and
sigma = 0, so imitation shrinks the policy's spread as well as moving its mean.
"""

import math


def wasserstein_imitation(mu, sigma, a_expert, weight=None):
    """W2² of N(mu, diag sigma²) to the point a_expert, summed over the last (action) axis.

    Shapes (..., A) each; returns (...).  ``sigma`` is the standard deviation (>= 0); ``weight`` (A,)
    weighs each action dimension's term (0 leaves a dimension out; None = 1 each).
    """
    if mu.shape != a_expert.shape or mu.shape != sigma.shape:
        raise ValueError(f"wasserstein_imitation: expected mu, sigma, a_expert of one shape, got "
                         f"{tuple(mu.shape)}, {tuple(sigma.shape)}, {tuple(a_expert.shape)}")
    per_dim = (mu - a_expert).pow(2) + sigma.pow(2)
    return (per_dim if weight is None else per_dim * weight).sum(-1)


def deterministic_imitation(action, a_expert):
    """||a - a_E||² over the last axis (the W2² of a deterministic policy)."""
    if action.shape != a_expert.shape:
        raise ValueError(f"deterministic_imitation: expected equal shapes, got {tuple(action.shape)} "
                         f"and {tuple(a_expert.shape)}")
    return (action - a_expert).pow(2).sum(-1)


def td_loss(q_pred, target):
    """Mean squared TD error; q_pred (K, B, N) for K critics, target (B, N)."""
    return (q_pred - target.unsqueeze(0)).pow(2).mean(dim=(1, 2)).sum()


# ---- annealing schedules: f(progress in [0, 1]) -> weight between start (0) and end (1) ----
def _constant(p):
    return 0.0


def _linear(p):
    return p


def _cosine(p):
    return 0.5 * (1.0 - math.cos(math.pi * p))


def _exponential(p):
    # reaches 1 - e^-5 ≈ 0.993 of the way at the end of the horizon, then snaps to end
    return 1.0 if p >= 1.0 else (1.0 - math.exp(-5.0 * p)) / (1.0 - math.exp(-5.0))


SCHEDULES = {"constant": _constant, "linear": _linear, "cosine": _cosine, "exponential": _exponential}


def anneal(schedule, start, end, step, horizon):
    """Weight at ``step``: moves from ``start`` to ``end`` over ``horizon`` steps, then stays at ``end``.

    ``schedule='constant'`` keeps ``start`` for ever.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule: {schedule!r} is not one of {sorted(SCHEDULES)}")
    progress = 1.0 if horizon <= 0 else min(max(step / horizon, 0.0), 1.0)
    return start + (end - start) * SCHEDULES[schedule](progress)

"""Imitative expert multi-agent RL: batched actors, differential-attention critics, Wasserstein imitation.

Modules: networks (batched actors), attention (differential / softmax attention over agents),
critics (attention, MLP and local critics), losses (W2 imitation, schedules), buffer (replay,
demonstrations), algorithms (ALGORITHMS registry, Learner), train (the training loop),
checkpoint (save/resume), policy (ActorPolicy for the co-simulation), bench (timings).
torch is imported by these modules, not here.
"""

"""Save and restore a training run so that a resumed run continues bit-identically.

checkpoint.pt holds the learner (actor, critics, targets, optimizers, update counter), the RNG
states of torch, numpy (the global one and the run's Generator) and python, the demonstration
sampler's state with the labels added online, and the loop's counters; buffer.npz holds the replay contents and the buffer's
sampling generator.  Both are written under temporary names and renamed together, so a crash
never leaves a checkpoint next to a buffer of another step.  Everything loads with
``torch.load(weights_only=True)``.
"""

import random

import numpy as np
import torch

from simulators.validation import ConfigError


def save_checkpoint(run_dir, learner, buffer, labels, rng, loop):
    """Write checkpoint.pt and buffer.npz into ``run_dir``; ``loop``: the loop's own counters."""
    state = {
        "learner": learner.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "numpy_global": _numpy_global_state(),
                "numpy": rng.bit_generator.state, "python": random.getstate()},
        "labels": labels.state_dict(),
        "loop": loop,
    }
    torch.save(state, run_dir / "checkpoint.tmp")
    buffer.save(run_dir / "buffer.tmp.npz")
    (run_dir / "buffer.tmp.npz").replace(run_dir / "buffer.npz")
    (run_dir / "checkpoint.tmp").replace(run_dir / "checkpoint.pt")


def load_checkpoint(run_dir, learner, buffer, labels, rng):
    """Restore what save_checkpoint wrote (in place) and return the loop's counters."""
    path = run_dir / "checkpoint.pt"
    if not path.is_file() or not (run_dir / "buffer.npz").is_file():
        raise ConfigError(f"resume: no checkpoint.pt and buffer.npz in {str(run_dir)!r}")
    state = torch.load(path, weights_only=True)
    learner.load_state_dict(state["learner"])
    buffer.load(run_dir / "buffer.npz")
    labels.load_state_dict(state["labels"])
    torch.set_rng_state(state["rng"]["torch"])
    glob = state["rng"]["numpy_global"]
    np.random.set_state({**glob, "state": {**glob["state"], "key": np.array(glob["state"]["key"], np.uint32)}})
    rng.bit_generator.state = state["rng"]["numpy"]
    random.setstate(state["rng"]["python"])
    return state["loop"]


def _numpy_global_state():
    """numpy's legacy global RNG state with its key as a list (loadable with weights_only=True)."""
    st = np.random.get_state(legacy=False)
    return {**st, "state": {**st["state"], "key": st["state"]["key"].tolist()}}

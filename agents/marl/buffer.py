"""Replay buffer of batched multi-agent transitions, demonstrations, and the expert labels, numpy storage.

One transition holds every agent: obs (N, F), act (N, A), rew (N,), next_obs (N, F), done, and
optionally the global state (S,) before and after.  Sampling uses the buffer's own seeded
generator, whose state is saved with the contents, so a resumed run draws the same batches.
``prefill`` puts transitions (the expert's demonstrations, as in DDPGfD) at the front, where new
transitions never overwrite them.  ``sample(n_step=n)`` returns n-step transitions read off the
stored trajectory: the rewards of up to n consecutive transitions, cut at an episode's end and
at the newest transition, with the discount to bootstrap from the last one's next observation.
``LabelSet`` holds (observation, expert action) pairs for the imitation term: the
demonstrations plus the online expert's labels of visited states (DAgger's aggregated data).
"""

import json
from pathlib import Path

import numpy as np
import torch

from simulators.validation import ConfigError


class ReplayBuffer:
    def __init__(self, capacity, n_agents, obs_dim, act_dim, state_dim=0, seed=0):
        self.capacity = int(capacity)
        shapes = {"obs": (n_agents, obs_dim), "act": (n_agents, act_dim), "rew": (n_agents,),
                  "next_obs": (n_agents, obs_dim), "done": ()}
        if state_dim:
            shapes["state"] = shapes["next_state"] = (state_dim,)
        self.shapes = shapes
        self.data = {k: np.zeros((self.capacity, *s), dtype=np.float32) for k, s in shapes.items()}
        self.ptr = self.size = self.kept = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return self.size

    def add(self, **transition):
        """Store one transition; keys must be exactly the buffer's fields."""
        if set(transition) != set(self.shapes):
            raise ValueError(f"transition: expected fields {sorted(self.shapes)}, got {sorted(transition)}")
        for k, v in transition.items():
            v = np.asarray(v, dtype=np.float32)
            if v.shape != self.shapes[k]:
                raise ValueError(f"{k}: expected shape {self.shapes[k]}, got {v.shape}")
            self.data[k][self.ptr] = v
        self.ptr = self.ptr + 1 if self.ptr + 1 < self.capacity else self.kept
        self.size = min(self.size + 1, self.capacity)

    def prefill(self, **arrays):
        """Store K transitions (arrays (K, ...) per field) that ``add`` never overwrites; once, into an empty buffer."""
        if self.size:
            raise ValueError("prefill: the buffer must be empty")
        if set(arrays) != set(self.shapes):
            raise ValueError(f"prefill: expected fields {sorted(self.shapes)}, got {sorted(arrays)}")
        k = len(arrays["obs"])
        if not 0 < k < self.capacity:
            raise ValueError(f"prefill: {k} transitions do not fit a buffer of capacity {self.capacity} "
                             f"with room left for new ones")
        for name, v in arrays.items():
            v = np.asarray(v, dtype=np.float32)
            if v.shape != (k, *self.shapes[name]):
                raise ValueError(f"prefill {name}: expected shape {(k, *self.shapes[name])}, got {v.shape}")
            self.data[name][:k] = v
        self.ptr = self.size = self.kept = k

    def recent(self, key, n):
        """The last ``n`` stored values of ``key``, oldest first (for replaying an episode)."""
        if n > self.size - self.kept:
            raise ValueError(f"recent: asked for {n} transitions, buffer holds {self.size - self.kept} added ones")
        idx = self.ptr - n + np.arange(n)
        ring = self.capacity - self.kept  # the slots add() cycles through: kept .. capacity-1
        idx = np.where(idx < self.kept, idx + ring, idx) if self.kept else idx % self.capacity
        return self.data[key][idx]

    def sample(self, batch_size, n_step=1, gamma=1.0):
        """Dict of float32 tensors, each (batch, ...): the stored fields, with ``rew`` the discounted
        sum over up to ``n_step`` transitions, ``next_obs``/``next_state``/``done`` those of the last
        one, ``discount`` (batch,) = gamma^steps * (1 - done) to bootstrap with, and ``rew_step`` (batch, N) the
        first transition's own reward."""
        idx = self.rng.integers(0, self.size, size=batch_size)
        rew, last, steps = self.data["rew"][idx].copy(), idx.copy(), np.ones(batch_size)
        for k in range(1, n_step):
            nxt = self._next(last)
            alive = (self.data["done"][last] == 0) & (nxt != self.ptr) & (nxt < self.size)
            if not alive.any():
                break
            last = np.where(alive, nxt, last)
            rew += alive[:, None] * gamma ** k * self.data["rew"][last]
            steps += alive
        batch = {k: torch.from_numpy(v[idx]) for k, v in self.data.items()}
        for key in ("next_obs", "next_state", "done"):
            if key in self.data:
                batch[key] = torch.from_numpy(self.data[key][last])
        batch["rew_step"] = batch["rew"]
        batch["rew"] = torch.from_numpy(rew)
        batch["discount"] = torch.from_numpy((gamma ** steps * (1.0 - self.data["done"][last])).astype(np.float32))
        return batch

    def _next(self, idx):
        """The slot written after ``idx``: the next row of the kept (prefilled) block, else ring order."""
        ring_next = np.where(idx + 1 >= self.capacity, self.kept, idx + 1)
        return np.where(idx < self.kept, idx + 1, ring_next)

    def state_dict(self):
        arrays = {k: v[: self.size] for k, v in self.data.items()}
        return {"arrays": arrays, "ptr": self.ptr, "size": self.size, "kept": self.kept,
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, sd):
        for k, v in sd["arrays"].items():
            self.data[k][: len(v)] = v
        self.ptr, self.size, self.kept = int(sd["ptr"]), int(sd["size"]), int(sd.get("kept", 0))
        self.rng.bit_generator.state = sd["rng"]

    def save(self, path):
        sd = self.state_dict()
        np.savez(path, ptr=sd["ptr"], size=sd["size"], kept=sd["kept"], rng=np.array(json.dumps(sd["rng"])),
                 **{f"data_{k}": v for k, v in sd["arrays"].items()})

    def load(self, path):
        with np.load(path) as f:
            arrays = {k[5:]: f[k] for k in f.files if k.startswith("data_")}
            sd = {"arrays": arrays, "ptr": int(f["ptr"]), "size": int(f["size"]), "rng": json.loads(str(f["rng"])),
                  "kept": int(f["kept"]) if "kept" in f.files else 0}
        self.load_state_dict(sd)


class Demonstrations:
    """Expert demonstrations from an .npz with obs (T, N, F) and actions (T, N, A)."""

    def __init__(self, path, n_agents, obs_dim, act_dim, seed=0):
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"demos: file {str(path)!r} not found")
        with np.load(path) as f:
            missing = {"obs", "actions"} - set(f.files)
            if missing:
                raise ConfigError(f"demos: {str(path)!r} lacks arrays {sorted(missing)} (has {sorted(f.files)})")
            obs, act = f["obs"].astype(np.float32), f["actions"].astype(np.float32)
        for name, arr, last in (("obs", obs, obs_dim), ("actions", act, act_dim)):
            if arr.ndim != 3 or arr.shape[1:] != (n_agents, last):
                raise ConfigError(f"demos.{name}: expected shape (T, {n_agents}, {last}), got {arr.shape}")
        if len(obs) != len(act) or not np.isfinite(obs).all() or not np.isfinite(act).all():
            raise ConfigError(f"demos: obs and actions must have equal length T and finite values "
                              f"(got T = {len(obs)}, {len(act)})")
        self.obs, self.actions = obs, act
        self.rng = np.random.default_rng(seed)
        self.path = path
        self.reward = None
        """(T, N) rewards that replace the file's (set by agents.marl.train when the training environment's
        reward differs from the one the demonstrations were recorded under); None: the file's"""

    def transitions(self, potential=None):
        """The demonstrations as replay transitions: obs, act, rew, next_obs, done (arrays (T, ...)).

        Needs the reward, day and step arrays write_demonstrations saves; the observation after a
        day's last step is not stored, so that transition is terminal (done = 1, next_obs unused).
        ``potential``: shape the rewards with it (agents/marl/shaping.py), as the run's own transitions.
        """
        with np.load(self.path) as f:
            missing = {"reward", "day", "step"} - set(f.files)
            if missing:
                raise ConfigError(f"demo_replay: {str(self.path)!r} lacks arrays {sorted(missing)} for replay "
                                  f"transitions (write it with agents.expert.policy.write_demonstrations)")
            rew, day = f["reward"].astype(np.float32), f["day"]
        if self.reward is not None:
            rew = np.asarray(self.reward, dtype=np.float32)
        if rew.shape != self.obs.shape[:2] or day.shape != (len(self.obs),):
            raise ConfigError(f"demos.reward: expected shape {self.obs.shape[:2]}, got {rew.shape}")
        last = np.append(day[1:] != day[:-1], True)  # the last step of each episode
        next_obs = np.concatenate([self.obs[1:], self.obs[-1:]])
        next_obs[last] = self.obs[last]
        done = last.astype(np.float32)
        if potential is not None:
            rew = potential.shape(rew, self.obs, next_obs, done)
        return {"obs": self.obs, "act": self.actions, "rew": rew, "next_obs": next_obs, "done": done}

    def returns_to_go(self, gamma=1.0, potential=None):
        """(T, N) discounted return from each step to the end of its episode (the Monte-Carlo value
        of the expert's own action there), of the rewards shaped with ``potential`` if given."""
        tr = self.transitions(potential)
        out, acc = np.zeros_like(tr["rew"]), np.zeros(tr["rew"].shape[1], np.float32)
        for t in range(len(out) - 1, -1, -1):
            acc = tr["rew"][t] + gamma * (1.0 - tr["done"][t]) * acc
            out[t] = acc
        return out

    def __len__(self):
        return len(self.obs)


class LabelSet:
    """(observation (N, F), expert action (N, A)) pairs: the demonstrations, then labels added online.

    ``sample`` draws uniformly from all of them with its own seeded generator; ``state_dict``
    holds that generator and the added labels, so a resumed run continues with the same data.
    """

    def __init__(self, n_agents, obs_dim, act_dim, demos=None, seed=0):
        self.fixed = 0 if demos is None else len(demos)
        self.obs = np.zeros((max(self.fixed, 1) * 2, n_agents, obs_dim), np.float32)
        self.actions = np.zeros((len(self.obs), n_agents, act_dim), np.float32)
        if demos is not None:
            self.obs[:self.fixed], self.actions[:self.fixed] = demos.obs, demos.actions
        self.size = self.fixed
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return self.size

    def add(self, obs, actions):
        """Append one labelled state: obs (N, F), the expert's actions (N, A)."""
        if self.size == len(self.obs):  # grow by doubling
            self.obs = np.concatenate([self.obs, np.zeros_like(self.obs)])
            self.actions = np.concatenate([self.actions, np.zeros_like(self.actions)])
        self.obs[self.size], self.actions[self.size] = obs, actions
        self.size += 1

    def sample(self, batch_size):
        """(obs (batch, N, F), expert actions (batch, N, A)) as tensors."""
        if not self.size:
            raise ValueError("LabelSet.sample: no labels yet")
        idx = self.rng.integers(0, self.size, size=batch_size)
        return torch.from_numpy(self.obs[idx]), torch.from_numpy(self.actions[idx])

    def state_dict(self):
        added = slice(self.fixed, self.size)
        return {"rng": self.rng.bit_generator.state, "obs": torch.from_numpy(self.obs[added].copy()),
                "actions": torch.from_numpy(self.actions[added].copy())}

    def load_state_dict(self, sd):
        self.rng.bit_generator.state = sd["rng"]
        self.size = self.fixed
        for obs, act in zip(sd.get("obs", torch.zeros(0)).numpy(), sd.get("actions", torch.zeros(0)).numpy()):
            self.add(obs, act)

"""Bookkeeping of a training run: progress.csv rows (means since the last row) and the run's wall clock."""

import time

LOG_COLUMNS = ("step", "episodes", "episode_return", "critic_loss", "q_mean", "actor_loss", "actor_q",
               "imitation_loss", "advantage", "reward_model_loss", "reward_model_r2", "beta", "labels",
               "critic_pretrain_steps", "critic_mc_loss", "eval_return", "q_bias", "q_corr", "sps", "wall_s")
"""progress.csv's columns: eval_return is the mean per-agent return of the deterministic actor on the
evaluation days; q_bias = mean(Q - G) / mean|G| and q_corr = corr(Q, G) compare the first critic's Q
with the Monte-Carlo return-to-go G of those episodes (in the critic's reward units); reward_model_loss and
reward_model_r2 the reward model's squared error and R² on its training batches (critic_actions_value 'reward')"""


class Clock:
    """Wall seconds of a run so far (progress.csv's wall_s): since train() began, plus ``before``, the
    seconds a resumed run had spent up to its checkpoint."""

    def __init__(self):
        self.before, self.start = 0.0, time.perf_counter()

    def __call__(self):
        return self.before + time.perf_counter() - self.start


class LogAccumulator:
    """Means of the metrics since the last progress.csv row."""

    def __init__(self, sums=None, counts=None):
        self.sums, self.counts = dict(sums or {}), dict(counts or {})
        self.columns = None  # progress.csv's header, read or written once

    def add(self, **values):
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
            self.counts[k] = self.counts.get(k, 0) + 1

    def write(self, path, **fixed):
        row = {k: self.sums[k] / self.counts[k] for k in self.sums}
        row.update(fixed)
        new = not path.exists()
        if self.columns is None and new:
            self.columns = LOG_COLUMNS
        elif self.columns is None:  # a resumed run keeps its file's header (an older run may lack newer columns)
            with path.open() as fh:
                self.columns = tuple(fh.readline().strip().split(","))
        with path.open("a") as fh:
            if new:
                fh.write(",".join(self.columns) + "\n")
            fh.write(",".join(_fmt(row.get(c, float("nan"))) for c in self.columns) + "\n")
        self.sums, self.counts = {}, {}

    def state_dict(self):
        return {"sums": self.sums, "counts": self.counts}


def _fmt(x):
    return str(int(x)) if isinstance(x, int) else f"{x:.6g}"

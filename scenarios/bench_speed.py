"""Where a simulated day's wall time goes: power flow, models, and mosaik overhead.

    python -m scenarios.bench_speed                     # both scenarios, both groupings, 3 repeats
    python -m scenarios.bench_speed --repeats 5 --scenarios ieee33_day

For each scenario and grouping mode it runs the real co-simulation (simulators.cosim.run, rule
policy, plots off) and, in the same process, the same day through the training environment
(agents.env.P2PEnv), which calls the very modules the simulators wrap.  The environment run is
timed piece by piece, so per simulated step:

- power flow: ``GridModel.solve`` (lightsim2grid AC by default);
- models: profiles lookup, policy, devices, market clearing (everything else the env does);
- recording: writing the CSV rows (RunRecorder.record);
- mosaik overhead: co-simulation wall time minus the three above, i.e. scheduling, data
  exchange between simulators, and per-simulator calls in per-prosumer mode.

Figures are medians over ``--repeats``; start-up (world and simulator creation, the first
power flow) is reported apart from the day.  No assertions: these shared machines are noisy.
"""

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from agents.env import EnvConfig, P2PEnv, record_step
from simulators.cosim import run
from simulators.prosumer.policies import PolicyContext, make_policy
from simulators.recorder.recorder import RunRecorder
from simulators.scenario import GROUPINGS, PRESETS, validate

SCENARIOS = {name: PRESETS[name] for name in ("ieee33_day", "simbench_100")}


class Stopwatch:
    """Wraps a callable and adds up the wall and CPU (this thread's) time spent inside it."""

    def __init__(self, fn):
        self.fn, self.total_s, self.cpu_s = fn, 0.0, 0.0

    def __call__(self, *args, **kwargs):
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.total_s += time.perf_counter() - t0
            self.cpu_s += time.thread_time() - c0


def env_split(cfg, out_dir):
    """(power flow, models, recording) seconds for one day through P2PEnv, same config."""
    env = P2PEnv(EnvConfig(network=cfg.network, grid_model=cfg.grid_model, specs=cfg.specs,
                           max_prosumers=cfg.max_prosumers, market=cfg.market, tariff=cfg.tariff,
                           days=cfg.start_date, seed=cfg.seed))
    policy = make_policy(cfg.policy, PolicyContext(env.specs, tariff=env.tariff))
    solve = env.grid.solve = Stopwatch(env.grid.solve)
    recorder = RunRecorder(out_dir, env.fleet.names, env.fleet.buses, env.grid.bus_ids)
    record = Stopwatch(record_step)
    ids = np.arange(env.n_agents)
    t0 = time.perf_counter()
    obs, done, k = env.reset_batch(day=cfg.start_date), False, 0
    while not done:
        obs, _, done, info = env.step_batch(policy.act(obs, ids))
        record(recorder, env, info, k, str(k))
        k += 1
    total = time.perf_counter() - t0
    recorder.close()
    return solve.total_s, total - solve.total_s - record.total_s, record.total_s, k


def bench(name, grouping, repeats):
    cfg = validate(dataclasses.replace(SCENARIOS[name], grouping=grouping, progress=False, plots=False))
    setups, days, splits = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            _, summary = run(dataclasses.replace(cfg, results_dir=tmp, run_name=f"cosim{r}"))
            setups.append(summary["wall_setup_s"])
            days.append(summary["wall_run_s"])
            splits.append(env_split(cfg, Path(tmp) / f"env{r}"))
    steps = splits[0][3]
    pf, models, rec = (statistics.median(s[i] for s in splits) for i in range(3))
    day = statistics.median(days)
    return {"scenario": name, "grouping": grouping, "prosumers": summary["prosumers"], "steps": steps,
            "setup_s": statistics.median(setups), "day_s": day, "step_ms": 1e3 * day / steps,
            "power_flow_ms": 1e3 * pf / steps, "models_ms": 1e3 * models / steps,
            "recording_ms": 1e3 * rec / steps, "mosaik_ms": 1e3 * (day - pf - models - rec) / steps}


COLUMNS = (("scenario", "{}"), ("grouping", "{}"), ("prosumers", "{}"), ("setup_s", "{:.2f}"),
           ("day_s", "{:.2f}"), ("step_ms", "{:.2f}"), ("power_flow_ms", "{:.3f}"), ("models_ms", "{:.3f}"),
           ("recording_ms", "{:.3f}"), ("mosaik_ms", "{:.2f}"))


def markdown(rows, columns=COLUMNS):
    """A markdown table of ``rows`` (dicts) with ``columns`` ((key, format) pairs)."""
    head = "| " + " | ".join(c for c, _ in columns) + " |"
    rule = "|" + "---|" * len(columns)
    body = ["| " + " | ".join(f.format(r[c]) for c, f in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated: " + ", ".join(SCENARIOS))
    ap.add_argument("--groupings", default=",".join(GROUPINGS), help="comma-separated: " + ", ".join(GROUPINGS))
    ap.add_argument("--repeats", type=int, default=3, help="runs per configuration (median reported)")
    args = ap.parse_args(argv)
    rows = []
    for name in args.scenarios.split(","):
        if name not in SCENARIOS:
            raise SystemExit(f"error: --scenarios: unknown {name!r} (allowed: {', '.join(SCENARIOS)})")
        for grouping in args.groupings.split(","):
            if grouping not in GROUPINGS:
                raise SystemExit(f"error: --groupings: unknown {grouping!r} (allowed: {', '.join(GROUPINGS)})")
            rows.append(bench(name, grouping, max(1, args.repeats)))
            print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()

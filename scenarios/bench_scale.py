"""Scale benchmark: the grouped co-simulation, the training environment and the critic update at
1000 and 5000+ prosumers on a SimBench MV/LV grid.

    python -m scenarios.bench_scale                                  # 1000 and every load bus (5131)
    python -m scenarios.bench_scale --parts cosim --prosumers 1000 --workers 1 2   # also over 2 processes
    python -m scenarios.bench_scale --parts critic --critic-agents 1000 --batch 256 --threads 2

Each size runs one simulated day in a fresh Python process (so start-up and peak memory are that
run's own) with the real mosaik world of simulators.cosim, rule policy, AC power flow, plots off.
The simulators' methods are wrapped with stopwatches, so per simulated step the CPU time of the
main thread splits into: power flow (GridModel.solve), grid adapter (rest of GridSim), models
(profiles, policy, devices: ProfileSim + ProsumerSim), market (MarketSim), recording (RecorderSim,
CSV included), mosaik data (mosaik.scheduler.get_input_data: collecting every connected value
for a simulator) and mosaik other (scheduling, output validation, asyncio, inter-process messages;
the CPU time no wrapper saw).  With ``--workers K > 1`` the prosumer simulators run in K processes
(cmd start): their own work is then not in the main thread's split, only in the wall time
(step_ms).  Start-up splits into network (SimBench CSVs), profiles, specs, grid model
(lightsim2grid build and check) and world (starting simulators, connections), in wall seconds;
startup_cpu_s is the CPU time of the whole start-up (every thread, the run's process).

``scheduling``: the default scenario's day (IEEE 33-bus, 32 prosumers) with one simulator per
prosumer and grouped.

``env``: agent-steps per second of agents/env.py with random actions, one day (wall and per CPU
second).  ``critic``: one attention critic's forward + backward + Adam step, and the whole
twin-critic TD step of imitative_diffattn, with feeder neighbourhoods and with full attention.

step_ms is wall time, step_cpu_ms the main thread's CPU time of the same day: on these shared
machines wall time drifts with other people's jobs, CPU time much less (on a quiet machine the two
agree for in-process simulators).  peak_rss_mb is the main process's (worker processes not
included).  No assertions: figures only.
"""

import argparse
import contextlib
import dataclasses
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time

from scenarios.bench_speed import Stopwatch, markdown
from simulators.scenario import PRESETS

SCENARIO = PRESETS["simbench_mvlv_1000"]
PARTS = ("power_flow", "grid_adapter", "models", "market", "recording", "mosaik_data")


@contextlib.contextmanager
def instrumented(targets):
    """Replace each ``(owner, attribute)`` of ``targets`` by a Stopwatch over it; yield
    {"owner.attribute": Stopwatch}; restore the originals afterwards."""
    watches, saved = {}, []
    for owner, name in targets:
        original = getattr(owner, name)
        saved.append((owner, name, original))
        label = getattr(owner, "__qualname__", owner.__name__.rsplit(".", 1)[-1])  # class, or module's last part
        watch = watches[f"{label}.{name}"] = Stopwatch(original)

        def wrapper(*args, _watch=watch, **kwargs):
            return _watch(*args, **kwargs)

        setattr(owner, name, wrapper)
    try:
        yield watches
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def _targets():
    import mosaik.scheduler

    from simulators import cosim, scenario
    from simulators.grid import models
    from simulators.grid import sim as grid_sim
    from simulators.market import sim as market_sim
    from simulators.profiles import data as profile_data
    from simulators.profiles import sim as profile_sim
    from simulators.prosumer import sim as prosumer_sim
    from simulators.recorder import sim as recorder_sim

    steps = [(cls, m) for cls in (grid_sim.GridSim, prosumer_sim.ProsumerSim, profile_sim.ProfileSim,
                                  market_sim.MarketSim) for m in ("step", "get_data")]
    return steps + [(recorder_sim.RecorderSim, "step"), (models.GridModel, "solve"), (grid_sim, "make_grid"),
                    (mosaik.scheduler, "get_input_data"), (scenario, "make_network"), (scenario, "generate_specs"),
                    (scenario, "choose_buses"), (profile_sim.ProfileSim, "create"), (profile_data, "load_simbench"),
                    (cosim, "prepare"), (cosim, "_build")]


def measure(cfg):
    """Run ``cfg`` once with the stopwatches in; return a dict of figures (see the module doc)."""
    import mosaik

    from simulators.cosim import run

    with instrumented(_targets() + [(mosaik.World, "run")]) as w, tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        _, summary = run(dataclasses.replace(cfg, results_dir=tmp, progress=False, plots=False))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    # start-up in wall seconds; the day's parts in CPU seconds of the main thread (steadier here)
    s = {k: v.total_s for k, v in w.items()}
    c = {k: v.cpu_s for k, v in w.items()}
    steps = cfg.steps
    day, day_cpu, setup = s["World.run"], c["World.run"], s["cosim.prepare"] + s["cosim._build"]
    pf = c["GridModel.solve"]  # the day's solves and GridSim.init's one warm-up solve
    parts = {
        "power_flow": pf,
        "grid_adapter": c["GridSim.step"] + c["GridSim.get_data"] - pf,
        "models": sum(c[f"{cls}.{m}"] for cls in ("ProsumerSim", "ProfileSim") for m in ("step", "get_data")),
        "market": c["MarketSim.step"] + c["MarketSim.get_data"],
        "recording": c["RecorderSim.step"],
        "mosaik_data": c["scheduler.get_input_data"],
    }
    profiles = s["data.load_simbench"] + s["ProfileSim.create"]
    startup = {"network_s": s["scenario.make_network"], "profiles_s": profiles,
               "specs_s": s["scenario.generate_specs"] + s["scenario.choose_buses"], "grid_model_s": s["sim.make_grid"]}
    startup["world_s"] = setup - sum(startup.values())
    label = f"{cfg.scenario} {cfg.grouping}"
    row = {"run": label, "prosumers": summary["prosumers"], "workers": cfg.prosumer_workers, "startup_s": setup,
           "startup_cpu_s": cpu - day_cpu, **startup,
           "day_s": day, "step_ms": 1e3 * day / steps, "step_cpu_ms": 1e3 * day_cpu / steps, "cpu_s": cpu,
           "wall_s": wall, **{f"{k}_ms": 1e3 * v / steps for k, v in parts.items()},
           "mosaik_other_ms": 1e3 * (day_cpu - sum(parts.values())) / steps,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    return row


PART_CHOICES = ("cosim", "scheduling", "env", "critic")
COLUMNS = (("run", "{}"), ("prosumers", "{}"), ("workers", "{}"), ("startup_s", "{:.1f}"), ("startup_cpu_s", "{:.1f}"),
           ("network_s", "{:.1f}"), ("profiles_s", "{:.1f}"), ("specs_s", "{:.2f}"), ("grid_model_s", "{:.1f}"),
           ("world_s", "{:.1f}"), ("step_ms", "{:.0f}"), ("step_cpu_ms", "{:.0f}"),
           *((f"{p}_ms", "{:.1f}") for p in PARTS), ("mosaik_other_ms", "{:.1f}"), ("cpu_s", "{:.0f}"),
           ("wall_s", "{:.0f}"), ("peak_rss_mb", "{:.0f}"))


def env_rate(n_prosumers, network, days=1):
    """(agents, agent-steps/s wall, agent-steps/s CPU) of P2PEnv with random actions for ``days`` episodes."""
    from agents.env import EnvConfig
    from agents.marl.bench import bench_env

    return bench_env(n_prosumers, days, EnvConfig(network=network, specs="generate", n_prosumers=n_prosumers))


def critic_update(n_prosumers, network, batch, neighbourhood, threads, embed_dim=64, repeats=2, blocks=0):
    """{"one critic": (wall ms, CPU ms), "twin TD step": (wall ms, CPU ms)} at ``n_prosumers`` agents,
    best of ``repeats``: one attention critic's forward + backward + Adam (as agents.marl.bench
    times it), and imitative_diffattn's whole critic step (twin critics, TD target through the
    target networks); ``blocks`` > 0: on that many neighbourhood blocks drawn per update."""
    import torch

    from agents.marl.algorithms import ALGORITHMS, Learner
    from agents.marl.train import TrainConfig
    from simulators.grid.networks import feeder_groups, make_network, nominal_load_kw
    from simulators.prosumer.generate import choose_buses
    from simulators.prosumer.interface import ACTION_FIELDS, OBS_FIELDS

    torch.set_num_threads(threads)
    net = make_network(network)
    buses = list(choose_buses(nominal_load_kw(net), n_prosumers, SCENARIO.seed))
    groups = feeder_groups(net, buses) if neighbourhood == "feeder" else None
    n, f, a = len(buses), len(OBS_FIELDS), len(ACTION_FIELDS)
    cfg = TrainConfig(batch_size=batch, embed_dim=embed_dim, critic_blocks=blocks)
    learner = Learner(ALGORITHMS["imitative_diffattn"], cfg, n, f, a, groups=groups)
    b = {"obs": torch.randn(batch, n, f), "act": torch.rand(batch, n, a), "rew": torch.randn(batch, n),
         "next_obs": torch.randn(batch, n, f), "discount": torch.ones(batch)}
    learner.fit_reward_norm(b["rew"])
    critic = learner.critic.members[0]
    opt = torch.optim.Adam(critic.parameters())

    def one_critic():
        opt.zero_grad()
        critic(b["obs"], b["act"], blocks=learner._critic_blocks()[0]).pow(2).mean().backward()
        opt.step()

    return {"one critic": _best(one_critic, repeats), "twin TD step": _best(lambda: learner.update_critic(b), repeats)}


def _best(fn, repeats):
    """(wall ms, CPU ms of the whole process: every torch thread) of the fastest of ``repeats``
    calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append((1e3 * (time.perf_counter() - t0), 1e3 * (time.process_time() - c0)))
    return min(times)


SCHEDULING = ("per_prosumer", "grouped")
"""the default scenario's day with one simulator per prosumer and grouped: where per-prosumer
scheduling cost goes"""


def _child(args):
    if args.preset:
        cfg = dataclasses.replace(PRESETS[args.preset], grouping=args.grouping)
    else:
        cfg = dataclasses.replace(SCENARIO, network=args.network, n_prosumers=args.prosumers[0],
                                  prosumer_workers=args.workers[0],
                                  prosumer_start="cmd" if args.workers[0] > 1 else "python")
    print(json.dumps(measure(cfg)))


def _in_child(*flags):
    cmd = [sys.executable, "-m", "scenarios.bench_scale", "--child", *map(str, flags)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=list(PART_CHOICES), choices=PART_CHOICES,
                    help="cosim: the co-simulation table; scheduling: per-prosumer simulators on the default scenario; "
                         "env: training environment throughput; critic: update time")
    ap.add_argument("--prosumers", type=int, nargs="+", default=[1000, 0],
                    help="prosumers per run (a seeded choice of load buses; 0 = every load bus)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1], help="prosumer worker processes per co-simulation")
    ap.add_argument("--network", default=SCENARIO.network, help="simbench:<code> or a NETWORKS name")
    ap.add_argument("--critic-agents", type=int, nargs="+", default=[100, 1000],
                    help="agents of the critic update (100 with full attention is the README's MARL table's case)")
    ap.add_argument("--embed-dims", type=int, nargs="+", default=[64, 32], help="critic embedding widths")
    ap.add_argument("--critic-blocks", type=int, nargs="+", default=[0, 1],
                    help="feeder neighbourhood: blocks of agents drawn per critic update (0 = all; TrainConfig.critic_blocks)")
    ap.add_argument("--batch", type=int, default=256, help="batch of the critic update")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the critic update")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--preset", default="", help=argparse.SUPPRESS)
    ap.add_argument("--grouping", default="grouped", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args)
    rows = []
    for n, k in itertools.product(args.prosumers, args.workers) if "cosim" in args.parts else ():
        rows.append(_in_child("--prosumers", n, "--workers", k, "--network", args.network))
        print(markdown(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
    for grouping in SCHEDULING if "scheduling" in args.parts else ():
        rows.append(_in_child("--preset", "ieee33_day", "--grouping", grouping))
        print(markdown(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
    if rows:
        print(f"\n{markdown(rows, COLUMNS)}\n")
    for n in args.prosumers if "env" in args.parts else ():
        agents, rate, rate_cpu = env_rate(n, args.network)
        print(f"environment agents={agents}: {rate:,.0f} agent-steps/s wall, {rate_cpu:,.0f} per CPU second",
              flush=True)
    cases = [(n, w, "feeder", k) for n, w, k in itertools.product(args.critic_agents, args.embed_dims, args.critic_blocks)]
    cases += [(n, w, "all", 0) for n, w in itertools.product(args.critic_agents, args.embed_dims)]
    for n, width, neighbourhood, blocks in cases if "critic" in args.parts else ():
        times = critic_update(n, args.network, args.batch, neighbourhood, args.threads, width, blocks=blocks)
        for what, (wall, cpu) in times.items():
            print(f"critic agents={n} batch={args.batch} threads={args.threads} embed={width} "
                  f"neighbourhood={neighbourhood} critic_blocks={blocks} {what}: {wall:,.0f} ms wall, "
                  f"{cpu:,.0f} ms CPU", flush=True)
    return rows


if __name__ == "__main__":
    main()

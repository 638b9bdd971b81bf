"""Expert timings for the README: one prosumer model, the joint expert, a day of demonstrations.

    python -m agents.expert.bench                       # default scenario, default test day
    python -m agents.expert.bench --skip-demos

Prints, for the default scenario's prosumers on the default held-out test day:
1. one prosumer's reference model (the richest spec: every device type): the first solve of a
   horizon (build + compile + solve) and the re-solve with new parameters (DPP, no compile);
2. the joint receding-horizon expert for all prosumers: the compile of each hourly problem,
   the per-step re-solve (median / max), and the whole day of 96 closed-loop steps;
3. the perfect-foresight solve of the whole day (the cost lower bound);
4. ``write_demonstrations`` for one day in the training environment (expert + env + file).
No assertions: these shared machines are noisy; the target is a day of joint expert actions
for 32 prosumers in under 60 s.
"""

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from agents.expert.joint import JointExpert, RecedingHorizon, evaluate, perfect_foresight
from agents.expert.policy import write_demonstrations
from agents.expert.reference import build_reference, make_state
from simulators.grid.networks import make_network
from simulators.market.tariffs import make_tariff
from simulators.profiles.data import DEFAULT_TEST_DAY, ProfileBank, assign_profiles, prosumer_days
from simulators.prosumer.spec import load_specs
from simulators.scenario import DATA_DIR


def richest(specs):
    """Index of the spec with the most device units (ties: first)."""
    units = [sum(len(u) for _, u in s.devices) for s in specs]
    return int(np.argmax(units))


def bench_reference(spec, col, days, tariff, times=(0, 32, 64)):
    """(first-solve s, median re-solve s) of one prosumer's model over ``times`` and ``days``."""
    model = build_reference(spec)
    first, again = [], []
    for t in times:
        for k, day in enumerate(days):
            state = make_state(spec, t, day.load_kw[:96, col], day.pv_avail_kw[:96, col],
                               tariff.buy_eur_per_kwh, tariff.sell_eur_per_kwh)
            t0 = time.perf_counter()
            model.solve(state)
            (again if k else first).append(time.perf_counter() - t0)
    return statistics.median(first), statistics.median(again)


def bench_joint(specs, tariff, net, day):
    expert = JointExpert(specs, tariff, net)
    t0 = time.perf_counter()
    rh = RecedingHorizon(expert, day).run()
    wall = time.perf_counter() - t0
    solve_s = np.asarray(evaluate(expert, rh)["solve_s"], dtype=float)
    t0 = time.perf_counter()
    pf = perfect_foresight(JointExpert(specs, tariff, net), day)
    return {"day_s": wall, "compile_s": expert.compile_s, "solve_median_s": float(np.median(solve_s)),
            "solve_max_s": float(solve_s.max()), "perfect_foresight_s": time.perf_counter() - t0,
            "perfect_foresight_eur": pf["total_eur"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--specs", default=str(DATA_DIR / "ieee33_prosumers.json"), help="prosumer spec file")
    ap.add_argument("--day", default=DEFAULT_TEST_DAY, help="day to plan, YYYY-MM-DD")
    ap.add_argument("--seed", type=int, default=0, help="profile assignment seed")
    ap.add_argument("--skip-demos", action="store_true", help="skip the demonstration-writing timing")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*(CPP backend|may be inaccurate).*")

    specs, tariff, net = load_specs(args.specs), make_tariff("tou"), make_network("ieee33")
    bank = ProfileBank.simbench()
    assignment = assign_profiles(specs, args.seed, bank)
    day = prosumer_days(bank, specs, assignment, args.day)
    other = prosumer_days(bank, specs, assignment, "2016-06-16")

    i = richest(specs)
    first, again = bench_reference(specs[i], i, [day, other], tariff)
    print(f"one prosumer ({specs[i].name}, every device type), reference model:")
    print(f"  first solve of a horizon (build + compile + solve)  {first * 1e3:8.1f} ms")
    print(f"  re-solve with new parameters (DPP)                 {again * 1e3:8.1f} ms")

    j = bench_joint(specs, tariff, net, day)
    print(f"joint receding-horizon expert, {len(specs)} prosumers, {args.day}:")
    print(f"  compile of the hourly problems (in the day total)  {j['compile_s']:8.2f} s")
    print(f"  re-solve per step, median / max                    {j['solve_median_s'] * 1e3:8.1f} / "
          f"{j['solve_max_s'] * 1e3:.1f} ms")
    print(f"  a day of 96 closed-loop steps, total               {j['day_s']:8.2f} s   (target < 60 s)")
    print(f"  perfect-foresight day (cost bound {j['perfect_foresight_eur']:.2f} EUR)     "
          f"{j['perfect_foresight_s']:8.2f} s")
    if not args.skip_demos:
        with tempfile.TemporaryDirectory() as tmp:
            meta = write_demonstrations(Path(tmp) / "demos.npz", [args.day])
        print(f"  a day of demonstrations in the env (write_demonstrations) {meta['wall_s']:6.2f} s")


if __name__ == "__main__":
    main()

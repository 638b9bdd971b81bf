"""Timings of generated experts through the jail, against the in-process reference (README figures).

    python -m agents.llm.bench                       # 8 prosumers, 8 steps, 3 verified candidates
    python -m agents.llm.bench --prosumers 32 --steps 4

Prints, on the default scenario's prosumers and a training day (DEFAULT_TRAIN_DAY):
1. the start-up of one jailed worker holding every prosumer's code (the reference model written
   as generated code, agents/llm/reference_code.py);
2. per receding-horizon step, the joint problem (agents/expert/joint.py ``couple``, a fresh
   problem per step, solved without DPP) built from the in-process reference's 6-tuples, and
   from the generated experts' tuples: the worker round trips (build in the jail + get_problem_data
   + transfer + validation), the parent's cvxpy pieces from the data, then couple + solve;
   median and max over the steps;
3. the verification of one candidate on 3 test states (jail start, builds, the parent's solves,
   checks), median over candidates.
No timed assertions: these machines are shared and noisy; compare the ratios within one run.
"""

import argparse
import statistics
import time
import warnings

import numpy as np

from agents.expert.joint import couple
from agents.expert.reference import build_reference, make_state
from agents.llm.reference_code import reference_code
from agents.llm.verification import make_test_states, reference_records, verify
from agents.llm.worker import GeneratedFleet
from simulators.grid.networks import make_network
from simulators.market.tariffs import make_tariff
from simulators.profiles.data import DEFAULT_TRAIN_DAY, ProfileBank, assign_profiles, prosumer_days
from simulators.prosumer.spec import load_specs
from simulators.scenario import DATA_DIR


def _step(experts, specs, day, cols, tariff, net, t):
    """(round trip s, pieces s, couple+solve s, objective) of one step; ``experts``: callables state ->
    6-tuple, or GeneratedExperts (then the worker round trip and the parent's pieces are timed apart)."""
    trip = pieces = 0.0
    tuples = []
    for expert, spec, j in zip(experts, specs, cols):
        state = make_state(spec, t, day.load_kw[:96, j], day.pv_avail_kw[:96, j], tariff.buy_eur_per_kwh,
                           tariff.sell_eur_per_kwh)
        t0 = time.perf_counter()
        data = expert.data(state) if hasattr(expert, "data") else None
        t1 = time.perf_counter()
        tuples.append(data.pieces() if data is not None else expert(state))
        trip, pieces = trip + t1 - t0, pieces + time.perf_counter() - t1
    t1 = time.perf_counter()
    problem, _ = couple(tuples, specs, net, day.load_kvar[t:96, cols])
    problem.solve(solver="CLARABEL", ignore_dpp=True)  # a fresh problem per step: DPP would only add compile time
    return trip, pieces, time.perf_counter() - t1, float(problem.value)


def _row(name, values):
    return f"  {name:<50s} median {1e3 * statistics.median(values):8.1f} ms   max {1e3 * max(values):8.1f} ms"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prosumers", type=int, default=8, help="first N prosumers of the default scenario")
    ap.add_argument("--steps", type=int, default=8, help="receding-horizon steps timed (spread over the day)")
    ap.add_argument("--candidates", type=int, default=3, help="candidates verified (0 = skip)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*(CPP backend|may be inaccurate).*")
    all_specs = load_specs(DATA_DIR / "ieee33_prosumers.json")
    specs = all_specs[: args.prosumers]
    cols = [all_specs.index(s) for s in specs]
    bank = ProfileBank.simbench()
    day = prosumer_days(bank, all_specs, assign_profiles(all_specs, 0, bank), DEFAULT_TRAIN_DAY)
    tariff, net = make_tariff("tou"), make_network("ieee33")
    times = [int(t) for t in np.linspace(8, 88, args.steps)]
    print(f"{len(specs)} prosumers, steps {times}, day {DEFAULT_TRAIN_DAY}")

    t0 = time.perf_counter()
    fleet = GeneratedFleet({s.name: reference_code(s) for s in specs}, specs)
    print(f"  jailed worker start-up (imports, warm-up, {len(specs)} codes loaded): "
          f"{time.perf_counter() - t0:.2f} s; jailed={fleet.worker.jail['available']}")
    references = [build_reference(s) for s in specs]
    rows = {"reference": [], "generated": []}
    for t in times:
        for name, experts in (("reference", references), ("generated", [fleet[s.name] for s in specs])):
            rows[name].append(_step(experts, specs, day, cols, tariff, net, t))
    fleet.close()
    for name in rows:
        trip, pieces, solve, _ = zip(*rows[name])
        if name == "generated":
            print(_row("generated: worker round trips (build in the jail)", trip))
        print(_row(f"{name}: model pieces in this process", pieces))
        print(_row(f"{name}: couple + solve", solve))
        print(_row(f"{name}: whole step", [a + b + c for a, b, c in zip(trip, pieces, solve)]))
    gap = max(abs(a[3] - b[3]) / max(1.0, abs(a[3])) for a, b in zip(rows["reference"], rows["generated"]))
    print(f"  largest relative objective difference generated vs reference: {gap:.2e}")

    if args.candidates:
        verify_s = []
        for spec in all_specs[: args.candidates]:
            states = make_test_states([spec], n=3)[spec.name]
            refs = reference_records(spec, states)
            t0 = time.perf_counter()
            result = verify(reference_code(spec), spec, states, references=refs)
            verify_s.append(time.perf_counter() - t0)
            if not result["accepted"]:
                raise SystemExit(f"the reference code of {spec.name} was rejected: {result['reasons'][:3]}")
        print(f"  verification per candidate (3 states): median {statistics.median(verify_s):.2f} s, "
              f"max {max(verify_s):.2f} s over {len(verify_s)} candidates")


if __name__ == "__main__":
    main()

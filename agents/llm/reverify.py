"""Verify again the accepted experts of expert-workflow run folders with today's verification.

    python -m agents.llm.reverify results/<workflow run> [results/<another run> ...]

The verification gets stricter over time (e.g. the feasible-set probes of support.py); an expert
accepted by an older run is only as good as the check it passed.  For every experts/<name>.py of
each folder this runs verification.verify (static check, jail, the parent's solve, device limits,
balance, objective gap, feasible-set probes) on the run's own spec (specs.json) and the same test
states as the workflow builds (seed and count from the run's config.json), prints one line per
expert and writes reverify.json into the folder (nothing the run wrote is changed).
"""

import argparse
import json
import sys
import time
from pathlib import Path

from agents.llm.verification import make_test_states, verify
from simulators.prosumer.spec import load_specs
from simulators.validation import ConfigError


def reverify(folder, allow_unjailed=False):
    """{name: {"accepted", "reasons", "max_abs_gap"}} for the accepted experts of ``folder``."""
    folder = Path(folder)
    experts = sorted((folder / "experts").glob("*.py"))
    if not (folder / "specs.json").is_file() or not experts:
        raise ConfigError(f"folder: {str(folder)!r} holds no accepted experts (experts/<name>.py and specs.json "
                          "of an expert-workflow run expected)")
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    specs = {s.name: s for s in load_specs(folder / "specs.json")}
    unknown = [p.stem for p in experts if p.stem not in specs]
    if unknown:
        raise ConfigError(f"folder: experts {unknown} have no spec in {str(folder / 'specs.json')!r}")
    # the run's own test states: built from all of its specs, as the workflow built them
    states = make_test_states(list(specs.values()), n=int(config.get("test_states", 3)),
                              seed=int(config.get("seed", 0)))
    out = {}
    for path in experts:
        spec = specs[path.stem]
        t0 = time.perf_counter()
        result = verify(path.read_text(), spec, states[spec.name], rel_tol=float(config.get("rel_tol", 0.01)),
                        allow_unjailed=allow_unjailed)
        out[spec.name] = {"accepted": result["accepted"], "reasons": result["reasons"],
                          "max_abs_gap": result["max_abs_gap"], "seconds": time.perf_counter() - t0}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="expert-workflow run folders")
    parser.add_argument("--allow-unjailed", action="store_true", help="run generated code without the jail")
    args = parser.parse_args(argv)
    total = kept = 0
    for folder in args.folders:
        try:
            rows = reverify(folder, args.allow_unjailed)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        (Path(folder) / "reverify.json").write_text(json.dumps(rows, indent=1))
        for name, row in rows.items():
            print(f"{folder}: {name} {'accepted' if row['accepted'] else 'REJECTED'}"
                  + ("" if row["accepted"] else f": {'; '.join(row['reasons'][:2])}"))
        total, kept = total + len(rows), kept + sum(r["accepted"] for r in rows.values())
    print(f"{kept} of {total} accepted experts pass today's verification")
    return kept, total


if __name__ == "__main__":
    main()

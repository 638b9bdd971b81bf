"""Free-text preference extraction accuracy per local model, on the phrasing benchmark.

    python -m agents.llm.bench_preferences --models smollm2-135m-instruct gemma-3-270m \
        qwen2.5-coder-0.5b-instruct qwen2.5-coder-1.5b-instruct

Every wording of agents/llm/data/preference_phrasings.json goes through
``preference_extraction.extract`` (per model and ``--variants`` entry: batched calls, JSON-schema
constrained decoding, the 'fewshot' split as the prompt's examples). A reply is *exact* when quantity and sense are right,
the bound is within 1 % after unit normalization (MW/W -> kW, MWh/Wh -> kWh; percent stays
percent) and the window covers the same steps of the day (so "inside 16:00-10:00" equals
"outside 10:00-16:00"). Reported on the held-out 'test' split (the figure that counts), the
'dev' split (for choosing the prompt) and the 'fewshot' split (examples the prompt shows; a
sanity check), with per-field accuracy, wall seconds and tokens/s. One model in memory at a
time. Writes
results/llm__preference-bench__0__<timestamp>/bench.json (every reply) and prints a table.
"""

import argparse
import json
import time

from agents.expert.preferences import UNITS, window_steps
from agents.llm import preference_extraction as X
from agents.llm.models import MODELS
from simulators.validation import ConfigError

FIELDS = ("quantity", "sense", "bound", "window")


def normalized(s):
    """(quantity, sense, (unit kind, bound), window steps) of a structure; window None if invalid."""
    model_unit, factor = UNITS.get(s["unit"], (s["unit"], None))
    bound = (model_unit, float(s["bound"]) * (factor or 1.0))
    try:
        window = frozenset(window_steps(s["from"], s["to"], s["applies"]))
    except ConfigError:
        window = None
    return {"quantity": s["quantity"], "sense": s["sense"], "bound": bound, "window": window}


def score(got, expected):
    """Per-field agreement and 'exact' of one reply (None = no parseable reply)."""
    if got is None:
        return {**{f: False for f in FIELDS}, "exact": False}
    g, e = normalized(got), normalized(expected)
    ok = {"quantity": g["quantity"] == e["quantity"], "sense": g["sense"] == e["sense"],
          "bound": g["bound"][0] == e["bound"][0] and abs(g["bound"][1] - e["bound"][1]) <= 0.01 * abs(e["bound"][1])
          + 1e-9, "window": g["window"] is not None and g["window"] == e["window"]}
    ok["exact"] = all(ok.values())
    return ok


def run_model(backend, rows, variant=X.DEFAULT_VARIANT):
    t0 = time.perf_counter()
    before = dict(backend.decoder.stats)
    got, raws = X.extract(backend, [r["text"] for r in rows], variant=variant)
    wall = time.perf_counter() - t0
    scored = [{"text": r["text"], "split": r["split"], "expected": r["expected"], "got": g, "raw": raw,
               **score(g, r["expected"])} for r, g, raw in zip(rows, got, raws)]
    return scored, wall, {k: round(v - before[k], 2) for k, v in backend.decoder.stats.items()}


def summary(scored, split):
    rows = [s for s in scored if s["split"] == split]
    if not rows:
        return {"n": 0, "exact": float("nan"), **{f: float("nan") for f in FIELDS}}
    out = {"n": len(rows), "exact": sum(s["exact"] for s in rows) / len(rows)}
    out.update({f: sum(s[f] for s in rows) / len(rows) for f in FIELDS})
    return out


def main(argv=None):
    from agents.llm.llm import HFBackend
    from simulators.recorder.recorder import new_run_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct"], choices=sorted(MODELS))
    parser.add_argument("--variants", nargs="+", default=[X.DEFAULT_VARIANT], choices=X.VARIANTS,
                        help="extraction variants (preference_extraction.VARIANTS), each on every model")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per padded batch")
    parser.add_argument("--splits", nargs="+", default=["fewshot", "dev", "test"], choices=("fewshot", "dev", "test"),
                        help="benchmark splits to run (choose the prompt on dev; touch test once)")
    parser.add_argument("--no-jump-forward", action="store_true", help="decode forced JSON text token by token")
    parser.add_argument("--results-dir", default="results")
    args = parser.parse_args(argv)
    rows = json.loads(X.PHRASINGS.read_text())["phrasings"]
    rows = [r for r in rows if r["split"] in args.splits]
    report = []
    for name in args.models:
        backend = HFBackend(name, device="cpu", dtype=args.dtype, threads=args.threads, batch_size=args.batch_size)
        backend.decoder.jump_forward = not args.no_jump_forward
        for variant in args.variants:
            generate_s, tokens = backend.generate_s, backend.tokens_out
            scored, wall, stats = run_model(backend, rows, variant)
            speed = (backend.tokens_out - tokens) / max(backend.generate_s - generate_s, 1e-9)
            entry = {"model": name, "variant": variant, "model_id": backend.model_id,
                     "load_s": round(backend.load_s, 1), "wall_s": round(wall, 1), "tokens_per_s": round(speed, 2),
                     "decoder": stats, "test": summary(scored, "test"), "dev": summary(scored, "dev"),
                     "fewshot": summary(scored, "fewshot"), "replies": scored}
            report.append(entry)
            print(json.dumps({k: v for k, v in entry.items() if k != "replies"}), flush=True)
        del backend
    folder = new_run_dir(args.results_dir, "", "llm", "preference-bench", 0)
    (folder / "bench.json").write_text(json.dumps({"args": vars(args), "models": report}, indent=1))
    print("| model | variant | exact (test) | quantity | sense | bound | window | exact (dev) | exact (few-shot) | wall s "
          "| tokens/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for e in report:
        t = e["test"]
        print(f"| {e['model']} | {e['variant']} | {t['exact']:.1%} of {t['n']} | {t['quantity']:.0%} | {t['sense']:.0%} | "
              f"{t['bound']:.0%} | {t['window']:.0%} | {e['dev']['exact']:.1%} | {e['fewshot']['exact']:.1%} | "
              f"{e['wall_s']} | "
              f"{e['tokens_per_s']} |")
    print(f"results: {folder}")


if __name__ == "__main__":
    main()

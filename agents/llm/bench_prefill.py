"""Prefill and decoding of the decomposed workflow's block prompts: row prefill against the padded batch.

    python -m agents.llm.bench_prefill --model qwen2.5-coder-0.5b-instruct --threads 2

The prompts are the first-round block prompts of a fleet (default: the default scenario's 32
prosumers, 67 blocks), rendered as the workflow renders them. In one process, for the first
``batch`` prompts in token order (as ``HFBackend.generate_batch`` batches them):

- ``padded``: the older prefill (the batch's shared prefix from the cache, every suffix in one
  padded batch) and transformers' stock cache, which concatenates its content at every step;
- ``rows``: each prompt alone from the cache of the prefix it shares with the one before, the row
  caches stacked into preallocated buffers (agents/llm/decoding.py, the default);

each decoding ``new-tokens`` greedy tokens: prefill seconds, prompt positions run (the padded way's
padding not counted), seconds per decoding step, and whether the two give the same tokens. Then the
whole fleet's prompts are prefilled the rows way (positions and seconds), next to the positions the
padded way would run (counted, not run: ~4x the time). Writes ``bench.json`` into
results/llm__prefill-bench__0__<timestamp>/.
Absolute seconds drift with the machine's load; the ratios of one run are the robust part.
"""

import argparse
import json
import time

from agents.llm.decoding import padded_positions as batch_positions
from agents.llm.models import MODELS


def fleet_prompts(specs_path=None):
    """[user prompt] of every first-round block of the fleet, with the example pool the workflow uses."""
    from agents.llm.decomposed import _default_pool, block_ids, block_prompt, merged_pool
    from simulators.prosumer.spec import load_specs

    specs = load_specs(specs_path) if specs_path else _default_pool()
    pool = merged_pool(specs, _default_pool())
    return [block_prompt(s, b, pool, 2) for s in specs for b in block_ids(s)]


def padded_positions(ids, batch):
    """(positions, of them padding) the padded prefill runs for ``ids`` in batches of ``batch`` (token order,
    each batch's shared prefix once, a cold prefix cache)."""
    total = pad = 0
    for k in range(0, len(ids), batch):
        positions, padding = batch_positions(ids[k:k + batch])
        total, pad = total + positions, pad + padding
    return total, pad


def measure(dec, ids, new_tokens, rows):
    dec.row_prefill, dec.prefix_ids, dec.prefix_cache = rows, (), None
    before = dict(dec.stats)
    out = dec.run(ids, max_new_tokens=new_tokens, stop_repetition=False)
    d = {k: dec.stats[k] - before[k] for k in dec.stats}
    return out, {"prefill_s": round(d["prefill_s"], 1), "prompt_positions_run": d["prefill_tokens"],
                 "decode_s_per_step": round(d["decode_s"] / max(d["decode_steps"], 1), 3)}


def main(argv=None):
    from agents.llm.decomposed import SYSTEM
    from agents.llm.llm import HFBackend
    from simulators.recorder.recorder import new_run_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct", choices=sorted(MODELS))
    parser.add_argument("--specs", default=None, help="a prosumer spec file (default: the default scenario's)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results-dir", default="results")
    args = parser.parse_args(argv)
    for name in ("batch", "new_tokens", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    backend = HFBackend(args.model, device="cpu", threads=args.threads, batch_size=args.batch)
    ids = sorted(backend._encode(backend.render(p, SYSTEM, "```python\n"), 400) for p in fleet_prompts(args.specs))
    dec = backend.decoder
    first = ids[:args.batch]
    out_p, padded = measure(dec, first, args.new_tokens, rows=False)
    out_r, rows = measure(dec, first, args.new_tokens, rows=True)
    same = sum(a[1] == b[1] for a, b in zip(out_p, out_r))
    dec.prefix_ids, dec.prefix_cache = (), None  # the whole fleet, batch by batch, prefill only
    before = dict(dec.stats)
    for k in range(0, len(ids), args.batch):
        dec.run(ids[k:k + args.batch], max_new_tokens=1)
    fleet = {"prefill_s": round(dec.stats["prefill_s"] - before["prefill_s"], 1),
             "prompt_positions_run": dec.stats["prefill_tokens"] - before["prefill_tokens"]}
    total, pad = padded_positions(ids, args.batch)
    result = {"model": args.model, "prompts": len(ids), "prompt_tokens": sum(map(len, ids)), "batch": args.batch,
              "first_batch": {"padded": padded, "rows": rows, "same_tokens": f"{same} of {len(first)}"},
              "fleet_prefill_rows": fleet, "fleet_positions_padded": {"positions": total, "padding": pad}}
    folder = new_run_dir(args.results_dir, "", "llm", "prefill-bench", 0)
    (folder / "bench.json").write_text(json.dumps({"args": vars(args), "result": result}, indent=1))
    print(json.dumps(result, indent=1))
    print(f"results: {folder}")


if __name__ == "__main__":
    main()

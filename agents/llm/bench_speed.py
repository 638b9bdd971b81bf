"""LLM speed on this machine: load, prefill, decoding at batch 1 and batched, prefix reuse, dtype.

    python -m agents.llm.bench_speed --models qwen2.5-coder-0.5b-instruct --variants fp32 bf16-weights bf16 int8
    python -m agents.llm.bench_speed --models smollm2-135m-instruct gemma-3-270m --batch 8 --new-tokens 32

For each model (one in memory at a time) and variant (VARIANTS: weights stored in float32 or
bfloat16, computed in float32 or bfloat16, or float32 with torch dynamic int8 quantization of
every Linear layer), on the preference-extraction prompts of ``batch`` held-out benchmark
wordings (agents/llm/data/preference_phrasings.json: ~1000 shared tokens, ~20 own tokens each),
decoding freely (no grammar) for ``new-tokens`` tokens:

- fidelity: next-token top-1 agreement and mean KL divergence against the float32 variant,
  teacher-forced over a fixed text (the basic model and the code skeleton), and whether the
  greedy completion of the first prompt is identical;
- prefill tokens/s of one prompt, decoding tokens/s at batch 1 and at batch ``batch`` (summed
  over the batch), and the prefill seconds of the batch with and without the shared-prefix
  KV cache.

Prints a markdown table and writes ``bench.json`` into results/llm-bench__<timestamp>/.
Absolute figures drift with the load of the shared 2-core machine; ratios measured in one run
are the robust part.
"""

import argparse
import json
import time

from agents.llm.models import MODELS, model_dir

VARIANTS = {"fp32": ("float32", "float32", "none"), "bf16-weights": ("bfloat16", "float32", "none"),
            "bf16": ("bfloat16", "bfloat16", "none"), "int8": ("float32", "float32", "int8")}
"""variant -> (stored weights, compute dtype, quantization); fp32 is the GGUF's exact de-quantization"""


def prompts_for(n):
    """(system, [user]) of the preference-extraction stage for ``n`` held-out benchmark wordings:
    a long shared prefix (instructions, few-shot examples) and a short own suffix per prompt."""
    from agents.llm import preference_extraction as X

    rows = json.loads(X.PHRASINGS.read_text())["phrasings"]
    texts = [r["text"] for r in rows if r["split"] == "test"][:n]
    examples = X.few_shot_examples()
    return X.SYSTEM, [X.prompt(t, examples) for t in texts]


def reference_text():
    from agents.llm import prompts as P

    return P.basic_model_text() + "\n\n" + P.SKELETON_HEAD


def next_token_logprobs(backend, text, n=256):
    import torch

    ids = backend.tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids[:, :n]
    with torch.no_grad():
        return torch.log_softmax(backend.model(input_ids=ids).logits[0].float(), dim=-1)


def measure(backend, system, users, new_tokens, reference=None):
    """One variant's figures (see the module docstring)."""
    import torch

    dec = backend.decoder
    row = {"load_s": round(backend.load_s, 1)}
    logp = next_token_logprobs(backend, reference_text())
    if reference is not None:
        ref_logp, ref_text = reference
        row["top1_agree"] = round(float((logp.argmax(-1) == ref_logp.argmax(-1)).float().mean()), 4)
        row["kl_mean"] = round(float(torch.sum(ref_logp.exp() * (ref_logp - logp), dim=-1).mean()), 5)
    dec.reuse_prefix = False

    def run(batch, tokens):
        before = dict(dec.stats)
        t = time.perf_counter()
        texts = backend.generate_batch(batch, system=system, max_new_tokens=tokens, batch_size=len(batch))
        d = {k: dec.stats[k] - before[k] for k in dec.stats}
        d["wall_s"] = time.perf_counter() - t
        return texts, d

    one, d1 = run(users[:1], new_tokens)
    row["prompt_tokens"] = d1["prefill_tokens"]
    row["prefill_tok_s"] = round(d1["prefill_tokens"] / d1["prefill_s"], 1)
    row["decode_tok_s_b1"] = round(d1["tokens_out"] / d1["decode_s"], 2)
    row["wall_s_b1"] = round(d1["wall_s"], 1)
    if reference is not None:
        row["same_greedy_text"] = one[0] == reference[1]
    _, db = run(users, new_tokens)
    row["batch"] = len(users)
    row["decode_tok_s_batch"] = round(db["tokens_out"] / db["decode_s"], 2)
    row["prefill_s_batch_no_reuse"] = round(db["prefill_s"], 1)
    row["wall_s_batch_no_reuse"] = round(db["wall_s"], 1)
    dec.reuse_prefix = True
    dec.prefix_ids, dec.prefix_cache = (), None
    _, dr = run(users, new_tokens)
    row["prefill_s_batch_reuse"] = round(dr["prefill_s"], 1)
    row["shared_prefix_tokens"] = dr["reused_tokens"] // max(1, len(users))
    row["wall_s_batch_reuse"] = round(dr["wall_s"], 1)
    return row, (logp, one[0])


def main(argv=None):
    from agents.llm.llm import HFBackend
    from simulators.recorder.recorder import new_run_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct"], choices=sorted(MODELS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results-dir", default="results")
    args = parser.parse_args(argv)
    system, users = prompts_for(args.batch)
    rows = []
    for name in args.models:
        reference = None
        for variant in args.variants:
            stored, dtype, quantize = VARIANTS[variant]
            folder = model_dir(name, stored)
            info = json.loads((folder / "p2p_model.json").read_text())
            backend = HFBackend(folder, device="cpu", dtype=dtype, quantize=quantize, threads=args.threads)
            row, ref = measure(backend, system, users, args.new_tokens, reference)
            reference = reference or (ref if variant == "fp32" else None)
            rows.append({"model": name, "variant": variant, "assemble_s": info["assemble_s"],
                         "convert_s": info["convert_s"], **row})
            print(json.dumps(rows[-1]), flush=True)
            del backend
    folder = new_run_dir(args.results_dir, "", "llm", "bench", 0)
    (folder / "bench.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    cols = ["model", "variant", "load_s", "prefill_tok_s", "decode_tok_s_b1", "batch", "decode_tok_s_batch",
            "prefill_s_batch_no_reuse", "prefill_s_batch_reuse", "top1_agree", "kl_mean"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    print(f"results: {folder}")


if __name__ == "__main__":
    main()

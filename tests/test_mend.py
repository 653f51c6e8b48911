"""MEND: the hypernetwork per family, the editor's bit-exact restore, checkpoints (trained,
packaged and EasyEdit's), the leakage-free split and exact resumption of an interrupted training."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch
import transformers
from run_summaries import run_summary
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors
from tiny_models import tiny_loaded

from pytest_kedit.benchmark.cases import EditRequest
from pytest_kedit.benchmark.registry import SPLITS
from pytest_kedit.dataset.sources import SPLIT_FILES, load_suite
from pytest_kedit.editors.mend.checkpoint import network_fingerprint, network_tensors, package_network, publish, read_manifest, trained_path
from pytest_kedit.editors.mend.editor import MENDEditor, MENDHyperParams, build_network, token_factors
from pytest_kedit.editors.mend.training import STATE_TENSORS, MENDTrainer
from pytest_kedit.editors.mend.training_data import EditExample, FactExample, TrainingData, leaked_entities, normalised, training_data
from pytest_kedit.errors import ConfigError
from pytest_kedit.model.probe import Encoder, collate, position_logprobs, token_logprobs
from pytest_kedit.results.provenance import provenance_difference

if TYPE_CHECKING:
    from pytest_kedit.editors.mend.network import MENDNetwork
    from pytest_kedit.model.loading import LoadedModel

PUBLISHED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "pitfalls" / "GPT2-XL"
SUITES = Path(__file__).resolve().parent.parent / "suites"
REQUEST = EditRequest(subject="France", prompt="the capital of {} is", target="Rome")
TINY = MENDHyperParams(rank=8)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEDIT_CACHE_DIR", str(tmp_path / "cache"))


def trained_like(network: torch.nn.Module, seed: int = 0) -> None:
    """Give a fresh network what training would: statistics, non-identity layers, step sizes."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in network.state_dict().items():
            if name.endswith(("_mean", "_s", "_std")) or name.endswith(".k") or ".layers." in name:
                shape = tensor.shape
                values = torch.rand(shape, generator=generator) + (0.5 if name.endswith(("_std", "_s", ".k")) else -0.5)
                tensor.copy_(values * (10 if name.endswith(".k") else 1))


@pytest.mark.parametrize("family", ["gpt2", "gptj", "llama", "gemma3_text", "gpt_neox"])
def test_identity_network_gives_the_fine_tuning_gradient(family: str) -> None:
    """Untrained (identity layers, no normalisation), ΔW = edit_lr · ∇W: the factors and their
    product are right for every family, GPT-2's transposed Conv1D included."""
    loaded = tiny_loaded(family)
    network = build_network(loaded, dataclasses.replace(TINY, norm=False))
    model, encoder = loaded.model, Encoder(loaded.tokenizer)
    batch = collate(
        [encoder("the capital of France is", "Paris"), encoder("Marie was born in", "Rome")], encoder.pad_id, loaded.device
    )
    factors, _ = token_factors(model, network.names, tuple(batch.input_ids.shape), lambda: -token_logprobs(model, batch).mean())
    params = dict(model.named_parameters())
    weights = [params[name].requires_grad_(True) for name in network.names]
    gradients = torch.autograd.grad(-token_logprobs(model, batch).mean(), weights)
    for w in weights:
        w.requires_grad_(False)
    updates = network.updates(factors)
    assert len(network.names) == 6 if family in ("gpt2", "gptj", "gpt_neox") else 9  # last three layers' MLP weights
    for name, gradient in zip(network.names, gradients):
        assert updates[name].shape == params[name].shape
        torch.testing.assert_close(updates[name], TINY.edit_lr * gradient, rtol=1e-4, atol=1e-10)
    x_dim, delta_dim = (32, 128) if family in ("gpt2", "gptj") else (32, 64)
    assert set(network.mend) == {str((x_dim, delta_dim)), str((delta_dim, x_dim))}  # EasyEdit's keys: (in, out)


def test_editor_without_checkpoint_says_how_to_train() -> None:
    with pytest.raises(ConfigError) as error:
        MENDEditor(TINY, tiny_loaded("llama"))
    assert "kedit train-mend --model tiny-llama" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.slow
def test_first_use_is_a_usage_error_in_one_line(pytester: pytest.Pytester, tiny_model_dir: Path, tmp_path: Path) -> None:
    for suite in SUITES.glob("test_*_edit.py"):  # the paper's suites
        pytester.makepyfile(**{suite.stem: suite.read_text()})
    result = pytester.runpytest_subprocess(
        "-p", "no:randomly", f"--kedit-model={tiny_model_dir}", "--kedit-method=mend", "--kedit-limit=1", "--kedit-split=coverage"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.stdout.lines + result.stderr.lines if "no trained MEND network" in line]
    assert len(lines) == 1 and "kedit train-mend --model" in lines[0]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_editor_edits_and_restores_bit_exactly(family: str) -> None:
    loaded = tiny_loaded(family)
    network = build_network(loaded, TINY)
    trained_like(network)
    publish(trained_path(loaded, network), network, {"steps": 0})
    editor = MENDEditor(TINY, loaded)
    before = {name: p.clone() for name, p in loaded.model.named_parameters()}
    delta = editor.apply(loaded.model, loaded.tokenizer, [REQUEST])
    after = dict(loaded.model.named_parameters())
    assert set(delta.originals) == set(network.names)
    assert all(not torch.equal(after[name], before[name]) for name in network.names)
    assert all(torch.equal(after[name], before[name]) for name in before if name not in network.names)
    delta.restore(loaded.model)
    assert all(torch.equal(p, before[name]) for name, p in loaded.model.named_parameters())


def test_editor_fingerprint_names_its_network_and_a_baseline_of_another_is_refused(tmp_path: Path) -> None:
    loaded = tiny_loaded("gpt2")
    network = build_network(loaded, TINY)
    trained_like(network, seed=1)
    publish(trained_path(loaded, network), network, {"steps": 0})
    trained = MENDEditor(TINY, loaded)
    safetensors_archive = tmp_path / "same.safetensors"
    safetensors_archive.write_bytes(save_safetensors(network_tensors(network)))
    assert MENDEditor(dataclasses.replace(TINY, mend_archive=str(safetensors_archive)), loaded).fingerprint == trained.fingerprint
    trained_like(network, seed=2)
    publish(trained_path(loaded, network), network, {"steps": 0})
    retrained = MENDEditor(TINY, loaded)
    assert retrained.fingerprint != trained.fingerprint
    recorded, current = (run_summary(method="mend", editor_fingerprint=e.fingerprint).provenance()
                         for e in (trained, retrained))
    assert provenance_difference(recorded, current) == (
        f"editor_fingerprint: {trained.fingerprint!r} recorded, {retrained.fingerprint!r} now"
    )


@pytest.fixture
def packaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder of packaged networks, in place of the package's."""
    folder = tmp_path / "networks"
    folder.mkdir()
    monkeypatch.setattr("pytest_kedit.editors.mend.checkpoint.PACKAGED_NETWORKS", folder)
    return folder


def training_manifest(loaded: LoadedModel, network: MENDNetwork) -> dict[str, Any]:
    """The keys of ``kedit train-mend``'s manifest that packaging and loading read."""
    return {"method": "mend", "model": loaded.name, "model_fingerprint": loaded.fingerprint, "inner_params": network.names,
            "data": {"source": "hand-made"}, "steps": 7}


def test_packaged_network_stores_matrices_in_float16_and_the_rest_in_float32(packaged: Path) -> None:
    loaded = tiny_loaded("llama")
    network = build_network(loaded, TINY)
    trained_like(network)
    path = package_network(network, training_manifest(loaded, network), packaged)
    assert path == packaged / "tiny-llama.safetensors"
    stored = load_file(path)
    assert {name: t.dtype for name, t in stored.items()} == {
        name: torch.float16 if t.dim() >= 2 else torch.float32 for name, t in network.state_dict().items()
    }
    transform = f"mend.{(32, 64)}"
    assert stored[f"{transform}.mlp.layers.0.u"].dtype == stored[f"{transform}.mlp.layers.0.mode_scale.weight"].dtype == torch.float16
    assert stored[f"{transform}.k"].dtype == stored[f"{transform}.u_s"].dtype == stored["edit_lrs"].dtype == torch.float32
    manifest = json.loads((packaged / "tiny-llama.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["stored"] == "float16 for matrices, float32 for the rest"
    assert manifest["inner_params"] == network.names and manifest["network_shape"] == dataclasses.asdict(TINY.network_shape)
    assert manifest["model_fingerprint"] == loaded.fingerprint and manifest["steps"] == 7


def test_packaged_network_loads_without_a_cache_entry_as_the_float16_rounded_network(packaged: Path) -> None:
    """float16 -> float32 is exact, so the editor's fingerprint of a packaged network is the same
    on every machine."""
    loaded = tiny_loaded("gpt2")
    network = build_network(loaded, TINY)
    trained_like(network, seed=4)
    path = package_network(network, training_manifest(loaded, network), packaged)
    editor, again = MENDEditor(TINY, loaded), MENDEditor(TINY, loaded)
    assert editor.source == f"packaged network {path} (trained 7 steps on hand-made)"
    assert editor.fingerprint == again.fingerprint
    original = network_tensors(network)
    rounded = {name: t.half().float() if t.dim() >= 2 else t for name, t in original.items()}
    assert any(not torch.equal(rounded[name], t) for name, t in original.items())  # float16 does round these values
    got = network_tensors(editor.network)
    assert got.keys() == rounded.keys()
    assert all(got[name].dtype == torch.float32 and torch.equal(got[name], t) for name, t in rounded.items())


def test_a_network_trained_here_wins_over_the_packaged_one(packaged: Path) -> None:
    loaded = tiny_loaded("llama")
    network = build_network(loaded, TINY)
    trained_like(network, seed=5)
    package_network(network, training_manifest(loaded, network), packaged)
    trained_like(network, seed=6)
    publish(trained_path(loaded, network), network, {"steps": 3, "data": {"source": "mine"}})
    editor = MENDEditor(TINY, loaded)
    assert editor.source == f"{trained_path(loaded, network)} (trained 3 steps on mine)"
    assert editor.fingerprint == network_fingerprint(network)


def test_a_packaged_network_whose_bytes_changed_is_refused_in_one_line(packaged: Path) -> None:
    loaded = tiny_loaded("llama")
    network = build_network(loaded, TINY)
    trained_like(network)
    path = package_network(network, training_manifest(loaded, network), packaged)
    changed = bytearray(path.read_bytes())
    changed[-1] ^= 1  # a bit of the last tensor: still a readable safetensors file
    path.write_bytes(bytes(changed))
    with pytest.raises(ConfigError) as error:
        MENDEditor(TINY, loaded)
    message = str(error.value)
    assert message.startswith(f"packaged MEND network {path}:") and "reinstall pytest-kedit" in message and "\n" not in message


def test_a_packaged_network_of_another_model_or_layout_is_not_used(packaged: Path) -> None:
    loaded = tiny_loaded("llama")
    network = build_network(loaded, TINY)
    package_network(network, training_manifest(loaded, network) | {"model_fingerprint": "tiny-llama-1"}, packaged)
    with pytest.raises(ConfigError, match="^no trained MEND network for tiny-llama: "):
        MENDEditor(TINY, loaded)
    package_network(network, training_manifest(loaded, network), packaged)
    with pytest.raises(ConfigError, match="^no trained MEND network for tiny-llama: "):
        MENDEditor(dataclasses.replace(TINY, rank=4), loaded)
    assert MENDEditor(TINY, loaded).source.startswith("packaged network")


def easyedit_state(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The network's tensors as an EasyEdit archive names them (older archives: ``gtn.``)."""
    return {
        ("gtn." + name.removeprefix("mend.")) if name.startswith("mend.") else name: t
        for name, t in network_tensors(network).items()
    }


def test_easyedit_archive_loads_as_tensors_only(tmp_path: Path) -> None:
    loaded = tiny_loaded("gpt2")
    hp = dataclasses.replace(TINY, inner_params=[f"transformer.h.{i}.mlp.{m}.weight" for i in (1, 2) for m in ("c_proj", "c_fc")])
    source = build_network(loaded, hp)
    trained_like(source, seed=3)
    archive = tmp_path / "gpt2-mend"
    opt_state = {
        "state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.zeros(2)}},
        "param_groups": [{"lr": 1e-6, "params": [0]}],
    }
    torch.save({"model": easyedit_state(source), "opt": opt_state, "lr_opt": None, "val_stats": {"loss": 0.5},
                "start_time": "2024-01-01", "elapsed_time": 1.0, "step": 5}, archive)  # fmt: skip
    editor = MENDEditor(dataclasses.replace(hp, mend_archive=str(archive)), loaded)
    for name, tensor in network_tensors(source).items():
        assert torch.equal(network_tensors(editor.network)[name], tensor), name
    assert editor.network.mend[str((32, 128))].mlp.layers[0].mode_scale.weight.shape == (2, 160)  # two c_fc weights


def test_archive_that_needs_code_to_unpickle_is_refused(tmp_path: Path) -> None:
    loaded = tiny_loaded("gpt2")
    network = build_network(loaded, TINY)
    archive = tmp_path / "with-config"
    torch.save({"model": {**easyedit_state(network), "model_config": transformers.GPT2Config()}}, archive)
    with pytest.raises(ConfigError, match=r"refused: unpickling it would need an object of transformers\.") as error:
        MENDEditor(dataclasses.replace(TINY, mend_archive=str(archive)), loaded)
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def small_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 40 records of every published GPT2-XL split, with the prompt files."""
    folder = tmp_path_factory.mktemp("source")
    for name in SPLIT_FILES.values():
        if (PUBLISHED / name).is_file():
            (folder / name).write_text(json.dumps(json.loads((PUBLISHED / name).read_text())[:40]))
    for name in ("conflict_prompts.json", "round_prompts.json"):
        shutil.copy(PUBLISHED / name, folder / name)
    return folder


@pytest.mark.skipif(not PUBLISHED.is_dir(), reason="the published GPT2-XL files are not on this machine")
def test_split_leaves_out_every_case_and_entity_of_the_suite(small_source: Path) -> None:
    data = training_data(str(small_source), None)
    suite = load_suite(None, list(SPLITS))
    assert leaked_entities(data.split, suite) == []
    assert data.split["dropped_cases"]["shares an entity"] > 0  # the rule does drop published cases
    excluded = set(data.split["excluded_entities"])
    assert not {normalised(e.subject) for e in data.train + data.val} & excluded
    assert not {normalised(f.subject) for f in data.facts} & excluded
    assert not set(data.split["train_subjects"]) & set(data.split["val_subjects"])
    only_suite = training_data(str(load_suite(None, list(SPLITS)).source), None)
    assert only_suite.train == [] and only_suite.split["dropped_cases"]["same case"] == only_suite.split["source_cases"]


TRAINING = dataclasses.replace(TINY, lr=1e-3, lr_lr=1e-3, max_iters=8, accumulate_bs=2, val_interval=4, val_steps=2)


@pytest.mark.slow
@pytest.mark.skipif(not PUBLISHED.is_dir(), reason="the published GPT2-XL files are not on this machine")
def test_checkpoint_manifest_records_a_split_without_leakage(small_source: Path, tmp_path: Path) -> None:
    loaded = tiny_loaded("llama")
    manifest = MENDTrainer(loaded, TRAINING, training_data(str(small_source), None), tmp_path / "run").run()
    assert manifest["steps"] == 8 and [row["step"] for row in manifest["validation"]] == [4, 8]
    stored = read_manifest(Path(manifest["cache_entry"]))
    assert stored["model_fingerprint"] == loaded.fingerprint and stored["hparams"]["max_iters"] == 8
    assert leaked_entities(stored["data"]["split"], load_suite(None, list(SPLITS))) == []
    MENDEditor(TRAINING, loaded).apply(loaded.model, loaded.tokenizer, [REQUEST])  # the editor finds it


@pytest.mark.slow
@pytest.mark.skipif(not PUBLISHED.is_dir(), reason="the published GPT2-XL files are not on this machine")
def test_resumed_training_equals_an_uninterrupted_one(small_source: Path, tmp_path: Path) -> None:
    data = training_data(str(small_source), None)
    MENDTrainer(tiny_loaded("llama"), TRAINING, data, tmp_path / "whole").run()
    MENDTrainer(tiny_loaded("llama"), TRAINING, data, tmp_path / "split").run(max_steps=4)  # interrupted here
    assert json.loads((tmp_path / "split" / "state.json").read_text())["state"]["step"] == 4
    MENDTrainer(tiny_loaded("llama"), TRAINING, data, tmp_path / "split").run()
    whole, split = load_file(tmp_path / "whole" / STATE_TENSORS), load_file(tmp_path / "split" / STATE_TENSORS)
    assert whole.keys() == split.keys()
    assert all(torch.equal(whole[key], split[key]) for key in whole)
    curves = [json.loads((tmp_path / run / "state.json").read_text())["state"]["curve"] for run in ("whole", "split")]
    assert curves[0] == curves[1]


HAND_MADE = TrainingData(
    train=[
        EditExample("France", ("the capital of {} is", "{}'s capital city is", "the seat of government of {} is"), "Rome", "Paris", "a"),
        EditExample("Marie Curie", ("{} was born in", "the birthplace of {} is", "{} came into the world in"), "Lyon", "Warsaw", "b"),
        EditExample("the Nile", ("{} flows through", "the river {} runs across", "{} crosses"), "Peru", "Egypt", "c"),
    ],
    val=[EditExample("Einstein", ("{} was born in", "the birthplace of {} is"), "Oslo", "Ulm", "d")],
    facts=[FactExample("Spain", "the capital of {} is", "Madrid"), FactExample("Mozart", "{} was born in", "Salzburg")],
    val_facts=[FactExample("Canada", "the capital of {} is", "Ottawa")],
)


@pytest.mark.parametrize("family", ["gpt2", "gptj", "llama", "gemma3_text", "gpt_neox"])
def test_a_batch_of_edits_scores_each_edit_as_its_own_dense_update(family: str, tmp_path: Path) -> None:
    """The training step edits each example of its batch on its own, through low-rank changes of
    the edited modules' outputs; oracle: ΔW of the example alone added to the weights, as the
    editor does, and its rows scored on that model."""
    loaded = tiny_loaded(family)
    model, encoder = loaded.model, Encoder(loaded.tokenizer)
    trainer = MENDTrainer(loaded, dataclasses.replace(TINY, rephrases=2), HAND_MADE, tmp_path)
    trained_like(trainer.network)
    with torch.no_grad():
        trainer.network.edit_lrs.fill_(0.5)
    trainer.network.eval()
    items = [trainer.training_item(example, random.Random(i)) for i, example in enumerate(HAND_MADE.train)]
    figures = trainer.step(items, train=False, with_old=True)
    params = dict(model.named_parameters())
    for item, got in zip(items, figures, strict=True):
        subject = item.example.subject
        edit_rows = collate([encoder(p.format(subject), item.example.target) for p in item.prompts], encoder.pad_id, loaded.device)
        old_rows = collate([encoder(p.format(subject), item.example.old) for p in item.prompts], encoder.pad_id, loaded.device)
        fact = collate([encoder(item.fact.prompt.format(item.fact.subject), item.fact.object)], encoder.pad_id, loaded.device)
        prompt = collate([encoder(item.prompts[0].format(subject), item.example.target)], encoder.pad_id, loaded.device)
        factors, _ = token_factors(model, trainer.names, tuple(prompt.input_ids.shape), lambda p=prompt: -token_logprobs(model, p).mean())
        with torch.no_grad():
            base_fact = position_logprobs(model, fact)
            updates = trainer.network.updates(factors)
            for name, update in updates.items():
                params[name].add_(update)
            edited = position_logprobs(model, edit_rows)
            edited_fact = position_logprobs(model, fact)
            target, old = token_logprobs(model, edit_rows), token_logprobs(model, old_rows)
            for name, update in updates.items():
                params[name].sub_(update)
        assert any(update.abs().max() > 1e-3 for update in updates.values())  # the edit is not negligible
        expected_edit_loss = -target.mean()
        expected_loc_loss = (base_fact.exp() * (base_fact - edited_fact)).sum(-1).mean()
        assert got["edit_loss"] == pytest.approx(float(expected_edit_loss), rel=1e-4, abs=1e-5)
        assert got["loc_loss"] == pytest.approx(float(expected_loc_loss), rel=1e-3, abs=1e-6)
        hit = edited.argmax(-1) == edit_rows.tokens
        rows_hit = [bool(hit[edit_rows.owners == r].all()) for r in range(len(item.prompts))]
        assert got["edit_success"] == pytest.approx(sum(rows_hit) / len(rows_hit))
        was_right, is_right = (base_fact.argmax(-1) == fact.tokens).float(), (edited_fact.argmax(-1) == fact.tokens).float()
        assert got["argmax_changed"] == pytest.approx(float((base_fact.argmax(-1) != edited_fact.argmax(-1)).float().mean()))
        assert got["drawdown"] == pytest.approx(float((was_right - is_right).mean()))
        assert (got["known"], got["lost"]) == (float(was_right.sum()), float((was_right * (1 - is_right)).sum()))
        rows = range(len(item.prompts))
        preferred = [float(target[edit_rows.owners == r].mean()) > float(old[old_rows.owners == r].mean()) for r in rows]
        assert got["preferred"] == pytest.approx(sum(preferred) / len(preferred))

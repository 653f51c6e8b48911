"""MEMIT and MEMIT+MLE on tiny random models of every family."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_rome import TINY_STATISTICS, TINY_VALUE, one_thread_and_private_cache, p, tiny_loaded  # noqa: F401
from tiny_models import FAMILIES

from pytest_kedit.benchmark.cases import Edit, EditRequest, Entity, Relation, RoundCase
from pytest_kedit.editors import corpus, create_editor, editor_class
from pytest_kedit.editors.hparams import load_hparams
from pytest_kedit.editors.key_value import read_at_subject, subject_prompt
from pytest_kedit.editors.memit import MEMITEditor, MEMITHyperParams, MEMITMLEEditor
from pytest_kedit.model.loading import LoadedModel, load_model
from pytest_kedit.run.harness import Harness

BATCH = [
    EditRequest(subject="France", prompt="the capital of {} is", target="Berlin"),
    EditRequest(subject="Hamlet", prompt="the author of {} is", target="Alice"),
    EditRequest(subject="Marie", prompt="the mother of {} is", target="Carol"),
]


def tiny_memit(loaded: LoadedModel, cls: type[MEMITEditor] = MEMITEditor, **overrides) -> MEMITEditor:
    hparams = {**TINY_VALUE, **TINY_STATISTICS, "clamp_norm_factor": 0.75, "layers": [0, 1], "mom2_update_weight": 1.0, **overrides}
    return cls(MEMITHyperParams(**hparams), loaded)


def last_layer_outputs(editor: MEMITEditor, requests: list[EditRequest]) -> torch.Tensor:
    last = editor.layer_name(editor.hparams.layers[-1])
    prompts = [subject_prompt(editor.encoder, "{}", r, with_target=False) for r in requests]
    _, outputs = read_at_subject(editor.loaded.model, prompts, [last], editor.encoder.pad_id)
    return outputs[last].float()


#: Gemma normalises the MLP output before adding it to the residual stream, so there the layer
#: output moves only roughly as the projection's update says (see docs/editors.md).
ADDITIVE_MLP = [f for f in FAMILIES if not f.startswith("gemma")]


@pytest.mark.parametrize("family", ADDITIVE_MLP)
def test_memit_moves_the_last_edited_layer_to_each_requests_target(family):
    loaded = tiny_loaded(family)
    editor = tiny_memit(loaded)
    z = editor.target_outputs(loaded.model, BATCH)
    before = last_layer_outputs(editor, BATCH)
    editor.apply(loaded.model, loaded.tokenizer, BATCH)
    after = last_layer_outputs(editor, BATCH)
    assert ((after - z).norm(dim=1) < 0.5 * (before - z).norm(dim=1)).all()


@pytest.mark.parametrize("family", ADDITIVE_MLP)
def test_mle_writes_all_targets_of_the_subject_at_once(family):
    """One subject, one key: MEMIT's least squares puts the subject's output at the mean of the z's."""
    loaded = tiny_loaded(family)
    requests = [EditRequest("Germany", "the capital of {} is", t) for t in ("Paris", "Rome", "Madrid")]
    editor = tiny_memit(loaded, MEMITMLEEditor)
    z = editor.target_outputs(loaded.model, requests)
    before = last_layer_outputs(editor, requests[:1])
    editor.apply(loaded.model, loaded.tokenizer, requests)
    after = last_layer_outputs(editor, requests[:1])
    assert (after - z.mean(dim=0)).norm() < 0.5 * (before - z.mean(dim=0)).norm()
    assert all((after - z_i).norm() < (before - z_i).norm() for z_i in z)


@pytest.mark.parametrize("method", ["memit", "alphaedit", "emmet"])
def test_every_memit_solve_writes_into_every_layer_and_restores_bit_exactly(family, method):
    loaded = tiny_loaded(family)
    original = {name: value.clone() for name, value in loaded.model.state_dict().items()}
    cls = editor_class(method)
    hparams = {**TINY_VALUE, **TINY_STATISTICS, "clamp_norm_factor": 0.75, "layers": [1, 2], "mom2_update_weight": 1.0}
    editor = cls(cls.hparams_class(**hparams), loaded)
    delta = editor.apply(loaded.model, loaded.tokenizer, BATCH)
    assert sorted(delta.originals) == sorted(f"{name}.weight" for name in editor.module_names)
    params = dict(loaded.model.named_parameters())
    assert all(not torch.equal(params[name], original[name]) for name in delta.originals)
    delta.restore(loaded.model)
    assert all(torch.equal(original[name], value) for name, value in loaded.model.state_dict().items())


def test_mle_is_memit_with_the_multi_label_round_edit():
    assert editor_class("memit-mle") is MEMITMLEEditor
    assert MEMITMLEEditor.multi_label and MEMITMLEEditor.batched and not MEMITEditor.multi_label
    assert MEMITMLEEditor.hparams_folder == "memit"
    assert "behaves exactly as MEMIT" in MEMITMLEEditor.__doc__


def test_the_round_edit_undo_of_mle_is_one_batch_of_all_true_objects():
    loaded = tiny_loaded("gpt2")
    relation = Relation("P1", "the capital of {} is", ("the capital city of {} is",))
    objects = tuple(Entity(label) for label in ("Paris", "Rome", "Madrid"))
    case = RoundCase("easy-0000", "easy", 0, "1-3@P1", Edit(Entity("Spain"), relation, objects[2], Entity("Berlin")), objects)
    editor = tiny_memit(loaded, MEMITMLEEditor)
    batches = []
    apply = editor.apply
    editor.apply = lambda model, tokenizer, requests: batches.append([r.target for r in requests]) or apply(model, tokenizer, requests)
    original = {name: value.clone() for name, value in loaded.model.state_dict().items()}
    Harness(loaded, editor).run(case)
    assert batches == [["Berlin"], ["Paris", "Rome", "Madrid"]]
    assert all(torch.equal(original[name], value) for name, value in loaded.model.state_dict().items())


def test_published_defaults_are_packaged():
    gpt2_xl = load_hparams("memit", MEMITHyperParams, "gpt2-xl", "gpt2")
    assert (gpt2_xl.layers, gpt2_xl.clamp_norm_factor, gpt2_xl.mom2_update_weight) == ([13, 14, 15, 16, 17], 0.75, 20000)
    gpt_j = load_hparams("memit", MEMITHyperParams, "EleutherAI/gpt-j-6B", "gptj")
    assert (gpt_j.layers, gpt_j.v_num_grad_steps, gpt_j.mom2_update_weight) == ([3, 4, 5, 6, 7, 8], 25, 15000)
    assert (gpt_j.v_lr, gpt_j.v_weight_decay, gpt_j.kl_factor, gpt_j.mom2_n_samples) == (0.5, 0.5, 0.0625, 100000)
    assert load_hparams("memit", MEMITHyperParams, "smollm2-135m", "llama").layers  # the embedded model's own defaults


@pytest.mark.parametrize("method", ["memit", "memit-mle"])
def test_the_registry_builds_memit_from_a_file(method, tmp_path):
    path = tmp_path / "memit.yaml"
    path.write_text("layers: [0, 1]\nmom2_adjustment: false\nv_num_grad_steps: 2\n")
    editor = create_editor(method, tiny_loaded("gpt_neox"), str(path))
    assert editor.name == method and editor.hparams.layers == [0, 1]
    editor.apply(editor.loaded.model, editor.loaded.tokenizer, BATCH[:1])
    assert editor.statistics_info == {}


@pytest.mark.slow
def test_memit_on_smollm2_makes_every_target_of_a_batch_more_likely(user_cache):
    """The real embedded model (cache: KEDIT_CACHE_DIR or the user's), with its packaged defaults
    but a small sampled corpus for the statistics, so that a fresh machine computes them quickly."""
    loaded = load_model("smollm2-135m", device="cpu")
    editor = create_editor("memit", loaded)
    editor.hparams = dataclasses.replace(editor.hparams, mom2_n_samples=32)
    batch = [
        EditRequest(subject="The Eiffel Tower", prompt="{} is located in the city of", target="Rome"),
        EditRequest(subject="Danielle Darrieux", prompt="The mother tongue of {} is", target="English"),
    ]
    before = [p(loaded, r.prompt.format(r.subject), r.target) for r in batch]
    delta = editor.apply(loaded.model, loaded.tokenizer, batch)
    after = [p(loaded, r.prompt.format(r.subject), r.target) for r in batch]
    delta.restore(loaded.model)
    assert all(a > 2 * b for a, b in zip(after, before)), (before, after)


def test_a_sampled_statistics_corpus_is_named_by_its_sampler_in_the_editors_fingerprint(monkeypatch, tmp_path):
    """How the statistics text is drawn from the model moves every result, so the sampler's version
    is part of what a baseline must match (the editor's fingerprint); a corpus the hyper-parameters
    name is recorded with them, and without statistics there is no corpus."""
    loaded = tiny_loaded("gpt_neox")
    today = tiny_memit(loaded, mom2_dataset=None).fingerprint
    monkeypatch.setattr(corpus, "SAMPLER_VERSION", corpus.SAMPLER_VERSION + 1)
    redrawn = tiny_memit(loaded, mom2_dataset=None).fingerprint
    assert today and redrawn and today != redrawn
    text = tmp_path / "corpus.txt"
    text.write_text("The statistics of a named corpus.\n")
    assert tiny_memit(loaded, mom2_dataset=str(text)).fingerprint is None
    assert tiny_memit(loaded, mom2_dataset=None, mom2_adjustment=False).fingerprint is None

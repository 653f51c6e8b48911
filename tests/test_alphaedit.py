"""AlphaEdit and AlphaEdit+MLE on tiny random models of every family: the solve against the
published formula and its limits, the null space, and K_p, which follows the model."""

from __future__ import annotations

import pytest
import torch
from test_memit import BATCH, tiny_memit
from test_rome import TINY_STATISTICS, TINY_VALUE, one_thread_and_private_cache, tiny_loaded  # noqa: F401

from pytest_kedit.benchmark.registry import SPLITS
from pytest_kedit.dataset.sources import load_suite
from pytest_kedit.editors import editor_class
from pytest_kedit.editors.alphaedit import AlphaEditEditor, AlphaEditHyperParams, AlphaEditMLEEditor
from pytest_kedit.editors.hparams import load_hparams
from pytest_kedit.editors.key_value import read_at_subject
from pytest_kedit.editors.memit import MEMITEditor
from pytest_kedit.errors import ConfigError
from pytest_kedit.model.loading import LoadedModel
from pytest_kedit.run.harness import Harness

#: Layer 0's keys are little more than the 63 token embeddings; the layers above have full-rank C.
LAYERS = [1, 2]


def tiny_alphaedit(loaded: LoadedModel, **overrides) -> AlphaEditEditor:
    hparams = {**TINY_VALUE, **TINY_STATISTICS, "clamp_norm_factor": 0.75, "layers": LAYERS, "mom2_dtype": "float64", **overrides}
    return AlphaEditEditor(AlphaEditHyperParams(**hparams), loaded)


def threshold_in_a_gap(editor: AlphaEditEditor, name: str) -> float:
    """A τ halfway between the middle two eigenvalues of C, far from both (relative to float64)."""
    values = torch.linalg.eigvalsh(editor.second_moment(name).double())
    middle = len(values) // 2
    return float(values[middle - 1] + values[middle]) / 2


def keys_and_residuals(editor: MEMITEditor, name: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's keys of BATCH at the projection ``name``, and random residuals, float64."""
    model = editor.loaded.model
    inputs, _ = read_at_subject(model, editor.key_prompts(BATCH), [name], editor.encoder.pad_id)
    K = editor.keys(inputs[name], len(BATCH))
    out_features = model.get_submodule(name).weight.shape[1 if editor.loaded.modules.weight_transposed else 0]
    R = torch.randn(len(BATCH), out_features, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return K, R


def test_the_small_solve_equals_the_published_formula(family):
    """ΔWᵀ = solve(P A + α I, P Kᵀ R), A = KᵀK + K_pᵀK_p, P from the SVD of C as the authors
    compute it, all in float64: the (keys × keys) solve gives the same ΔW."""
    loaded = tiny_loaded(family)
    name = loaded.modules.mlp_out.format(LAYERS[-1])
    probe = tiny_alphaedit(loaded)
    editor = tiny_alphaedit(loaded, nullspace_threshold=threshold_in_a_gap(probe, name), L2=0.5)
    K, R = keys_and_residuals(editor, name)
    K_p = K[:2].flip(1) + 0.1 * torch.randn(2, K.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    editor.preserved_keys = {name: K_p}

    tau = editor.hparams.nullspace_threshold
    U, S, _ = torch.linalg.svd(editor.second_moment(name).double())
    U0 = U[:, tau > S]
    P = U0 @ U0.T
    A = K.T @ K + K_p.T @ K_p
    published = torch.linalg.solve(P @ A + 0.5 * torch.eye(len(P), dtype=torch.float64), P @ K.T @ R).T

    ours = editor.update(name, K, R)
    assert 0 < U0.shape[1] < len(P)
    assert float((ours - published).norm() / published.norm()) < 1e-9


def test_the_update_annihilates_the_range_of_c(family):
    """ΔW v = 0, to float64 precision, for every eigenvector v of C with eigenvalue above τ."""
    loaded = tiny_loaded(family)
    name = loaded.modules.mlp_out.format(LAYERS[-1])
    editor = tiny_alphaedit(loaded, nullspace_threshold=threshold_in_a_gap(tiny_alphaedit(loaded), name))
    K, R = keys_and_residuals(editor, name)
    values, vectors = torch.linalg.eigh(editor.second_moment(name).double())
    kept = vectors[:, values >= editor.hparams.nullspace_threshold]
    update = editor.update(name, K, R)
    assert kept.shape[1] > 0 and update.norm() > 0
    assert float((update @ kept).norm() / update.norm()) < 1e-12
    assert editor.statistics_info["null_space_dim"][name] == len(values) - kept.shape[1]


def test_with_p_the_identity_and_no_earlier_keys_it_is_memit_with_c_the_identity(family):
    """``mom2_adjustment: false`` takes P = I: with K_p empty, AlphaEdit(α) is MEMIT(C = I, λ = α)."""
    edited = {}
    for method in ("alphaedit", "memit"):
        loaded = tiny_loaded(family)
        if method == "alphaedit":
            editor = tiny_alphaedit(loaded, mom2_adjustment=False, L2=0.25)
        else:
            editor = tiny_memit(loaded, layers=LAYERS, mom2_adjustment=False, mom2_update_weight=0.25)
        delta = editor.apply(loaded.model, loaded.tokenizer, BATCH)
        params = dict(loaded.model.named_parameters())
        edited[method] = {name: (params[name] - original).double() for name, original in delta.originals.items()}
    for name, change in edited["memit"].items():
        assert change.norm() > 0
        assert float((edited["alphaedit"][name] - change).norm() / change.norm()) < 1e-6, name


def test_an_empty_null_space_is_a_one_line_error():
    loaded = tiny_loaded("llama")
    name = loaded.modules.mlp_out.format(LAYERS[0])
    smallest = float(torch.linalg.eigvalsh(tiny_alphaedit(loaded).second_moment(name).double())[0])
    # a hair below the smallest eigenvalue: the editor's eigh and this eigvalsh may differ in the last bits
    editor = tiny_alphaedit(loaded, nullspace_threshold=smallest * (1 - 1e-6))
    with pytest.raises(ConfigError) as error:
        editor.apply(loaded.model, loaded.tokenizer, BATCH[:1])
    assert f"no eigenvalue of the second moment of {name} is below nullspace_threshold" in str(error.value)
    assert "the null space is empty" in str(error.value) and "\n" not in str(error.value)


class _Watched(AlphaEditEditor):
    """AlphaEdit noting how many earlier keys (rows of K_p, per projection) each edit found."""

    def __init__(self, hparams, loaded):
        super().__init__(hparams, loaded)
        self.found: list[int] = []

    def apply(self, model, tokenizer, requests):
        self.found.append(self.rows())
        return super().apply(model, tokenizer, requests)

    def rows(self) -> int:
        counts = {len(keys) for keys in self.preserved_keys.values()} or {0}
        assert len(counts) == 1, "every projection keeps the same edits"
        return counts.pop()


def test_k_p_grows_across_the_stages_of_a_case_and_is_empty_after_the_restore():
    """Coverage: e2 alone from θ (θs), e1 from θ (θm), then e2 on top (θ'): K_p holds e1's key when
    e2 is written after it, nothing otherwise, and nothing once the case is over."""
    case = load_suite(None, tuple(SPLITS), limit=1).splits["coverage"][0]
    loaded = tiny_loaded("gpt2")
    hparams = {**TINY_VALUE, **TINY_STATISTICS, "clamp_norm_factor": 0.75, "layers": LAYERS, "nullspace_threshold": 1e9}
    editor = _Watched(AlphaEditHyperParams(**hparams), loaded)
    original = {name: value.clone() for name, value in loaded.model.state_dict().items()}
    Harness(loaded, editor).run(case)
    assert editor.found == [0, 0, 1]
    assert editor.preserved_keys == {}
    assert all(torch.equal(original[name], value) for name, value in loaded.model.state_dict().items())


def test_k_p_holds_the_keys_read_on_the_edited_model():
    loaded = tiny_loaded("llama")
    editor = tiny_alphaedit(loaded, nullspace_threshold=1e9)
    delta = editor.apply(loaded.model, loaded.tokenizer, BATCH[:2])
    inputs, _ = read_at_subject(loaded.model, editor.key_prompts(BATCH[:2]), editor.module_names, editor.encoder.pad_id)
    for name in editor.module_names:
        torch.testing.assert_close(editor.preserved_keys[name], editor.keys(inputs[name], 2), rtol=0, atol=0)
    later = editor.apply(loaded.model, loaded.tokenizer, BATCH[2:])
    assert [len(keys) for keys in editor.preserved_keys.values()] == [3, 3]
    later.restore(loaded.model)
    assert [len(keys) for keys in editor.preserved_keys.values()] == [2, 2]
    delta.restore(loaded.model)
    assert editor.preserved_keys == {}


def test_mle_is_alphaedit_with_the_multi_label_round_edit():
    assert editor_class("alphaedit-mle") is AlphaEditMLEEditor
    assert AlphaEditMLEEditor.multi_label and AlphaEditMLEEditor.batched and not AlphaEditEditor.multi_label
    assert AlphaEditMLEEditor.hparams_folder == "alphaedit"


def test_published_and_measured_defaults_are_packaged():
    gpt2_xl = load_hparams("alphaedit", AlphaEditHyperParams, "gpt2-xl", "gpt2")
    assert (gpt2_xl.layers, gpt2_xl.nullspace_threshold, gpt2_xl.L2, gpt2_xl.clamp_norm_factor) == ([13, 14, 15, 16, 17], 2e-2, 10, 0.75)
    gpt_j = load_hparams("alphaedit", AlphaEditHyperParams, "EleutherAI/gpt-j-6B", "gptj")
    assert (gpt_j.layers, gpt_j.v_num_grad_steps, gpt_j.nullspace_threshold, gpt_j.L2) == ([3, 4, 5, 6, 7, 8], 25, 2e-2, 10)
    smollm2 = load_hparams("alphaedit", AlphaEditHyperParams, "smollm2-135m", "llama")
    assert (smollm2.layers, smollm2.nullspace_threshold, smollm2.L2, smollm2.mom2_n_samples) == ([2, 3, 4, 5, 6], 5e-3, 5, 200)


def test_an_easyedit_file_with_numbers_in_scientific_notation_loads(tmp_path):
    """EasyEdit writes ``2e-2`` (no dot), which YAML 1.1 reads as a string: a float key takes it."""
    path = tmp_path / "AlphaEdit.yaml"
    path.write_text('alg_name: "AlphaEdit"\nlayers: [1, 2]\nv_lr: 5e-1\nnullspace_threshold: 2e-2\nL2: 10\nmom2_update_weight: 1.5E+4\n')
    hparams = load_hparams("alphaedit", AlphaEditHyperParams, "tiny", "llama", str(path))
    assert (hparams.v_lr, hparams.nullspace_threshold, hparams.L2, hparams.mom2_update_weight) == (0.5, 0.02, 10, 15000.0)
    path.write_text("layers: [1]\nv_num_grad_steps: 2e1\n")
    with pytest.raises(ConfigError, match="'v_num_grad_steps' must be int, got '2e1'"):
        load_hparams("alphaedit", AlphaEditHyperParams, "tiny", "llama", str(path))

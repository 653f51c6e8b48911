"""EMMET on tiny random models of every family: the push-through identity with MEMIT, the exact
single edit, and the update-norm regulariser."""

from __future__ import annotations

import torch
from test_alphaedit import keys_and_residuals
from test_memit import BATCH, tiny_memit
from test_rome import TINY_STATISTICS, TINY_VALUE, one_thread_and_private_cache, tiny_loaded  # noqa: F401

from pytest_kedit.editors.emmet import EMMETEditor, EMMETHyperParams
from pytest_kedit.editors.hparams import load_hparams
from pytest_kedit.model.loading import LoadedModel

LAYERS = [1, 2]


def tiny_emmet(loaded: LoadedModel, **overrides) -> EMMETEditor:
    hparams = {**TINY_VALUE, **TINY_STATISTICS, "clamp_norm_factor": 0.75, "layers": LAYERS, "mom2_dtype": "float64", **overrides}
    return EMMETEditor(EMMETHyperParams(**hparams), loaded)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_emmet_is_memit_with_lambda_mu_times_lambda_e(family):
    """Push-through: Rᵀ (K (μC)⁻¹ Kᵀ + λ_E I)⁻¹ K (μC)⁻¹ = Rᵀ K (μλ_E C + KᵀK)⁻¹, for a batch."""
    loaded = tiny_loaded(family)
    emmet = tiny_emmet(loaded, mom2_update_weight=4.0, emmet_lambda=0.5)
    memit = tiny_memit(loaded, layers=LAYERS, mom2_dtype="float64", mom2_update_weight=2.0)
    name = emmet.module_names[-1]
    K, R = keys_and_residuals(emmet, name)
    assert len(K) > 1
    assert relative(emmet.update(name, K, R), memit.update(name, K, R)) < 1e-9
    edited = {}
    for editor in (emmet, memit):
        delta = editor.apply(loaded.model, loaded.tokenizer, BATCH)
        params = dict(loaded.model.named_parameters())
        edited[editor.name] = {n: (params[n] - original).double() for n, original in delta.originals.items()}
        delta.restore(loaded.model)
    for n, change in edited["memit"].items():
        assert change.norm() > 0 and relative(edited["emmet"][n], change) < 1e-6, n


def test_a_single_edit_is_written_exactly_whatever_mu_and_lambda_e(family):
    loaded = tiny_loaded(family)
    name = loaded.modules.mlp_out.format(LAYERS[-1])
    K, R = keys_and_residuals(tiny_emmet(loaded), name)
    k, r = K[:1], R[:1]
    updates = [tiny_emmet(loaded, mom2_update_weight=mu, emmet_lambda=lam).update(name, k, r) for mu, lam in ((1.0, 0.1), (1000.0, 5.0))]
    torch.testing.assert_close(updates[0] @ k[0], r[0], rtol=1e-9, atol=1e-12)
    assert relative(updates[1], updates[0]) < 1e-9


def test_a_large_update_norm_lambda_turns_the_metric_of_c_into_the_identity():
    """ν ≫ μ‖C‖: C' ≈ νI, and a single edit becomes R kᵀ / ‖k‖² (the update along the key)."""
    loaded = tiny_loaded("llama")
    name = loaded.modules.mlp_out.format(LAYERS[-1])
    editor = tiny_emmet(loaded, update_norm_lambda=1e9)
    K, R = keys_and_residuals(editor, name)
    k, r = K[:1], R[:1]
    along_the_key = r.T @ k / (k @ k.T)
    assert relative(editor.update(name, k, r), along_the_key) < 1e-6
    assert relative(tiny_emmet(loaded).update(name, k, r), along_the_key) > 1e-2


def test_the_authors_defaults_are_packaged():
    gpt2_xl = load_hparams("emmet", EMMETHyperParams, "gpt2-xl", "gpt2")
    assert (gpt2_xl.layers, gpt2_xl.mom2_update_weight, gpt2_xl.emmet_lambda, gpt2_xl.update_norm_lambda) == ([17], 1000, 0.1, 0)
    gpt_j = load_hparams("emmet", EMMETHyperParams, "EleutherAI/gpt-j-6B", "gptj")
    assert (gpt_j.layers, gpt_j.v_num_grad_steps, gpt_j.mom2_update_weight, gpt_j.clamp_norm_factor) == ([5], 25, 1, 0.75)
    assert load_hparams("emmet", EMMETHyperParams, "smollm2-135m", "llama").layers == [4]

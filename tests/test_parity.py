"""Parity with the published formulation: under ``--kedit-protocol=upstream``'s choices, the
project's ROME and MEMIT updates equal those of the straightforward references in
tests/reference_rome.py (full forward passes, logits everywhere, keys as the published code
computes them) to 1e-4 relative, on tiny random models of four families."""

from __future__ import annotations

import pytest
import torch
from reference_rome import ReferenceMEMIT, ReferenceROME
from test_memit import BATCH
from test_rome import REQUEST, TINY_STATISTICS, TINY_VALUE, one_thread_and_private_cache, tiny_loaded  # noqa: F401

from pytest_kedit.editors.memit import MEMITEditor, MEMITHyperParams, average_keys
from pytest_kedit.editors.rome import ROMEEditor, ROMEHyperParams

FAMILIES = ["gpt2", "gptj", "llama", "gemma3_text"]
#: The tiny-model settings of test_rome, with weight decay and the KL term in play. Tiny models'
#: second moments are ill-conditioned (GPT-J's about 10⁵): in float64, inverting C and solving
#: with it agree, so that a difference can only come from the formulation.
VALUE = {**TINY_VALUE, **TINY_STATISTICS, "v_weight_decay": 0.1, "kl_factor": 1.0, "mom2_dtype": "float64"}


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ (Frobenius)."""
    return float((a.double() - b.double()).norm() / b.double().norm())


#: Each protocol's choice on its own families: the upstream one on all four, the paper's on one.
ROME_CASES = [*((family, "prompt") for family in FAMILIES), ("llama", "averaged")]
MEMIT_CASES = [*((family, "grouped") for family in FAMILIES), ("llama", "flat")]


@pytest.mark.parametrize("family, update_key", ROME_CASES)
def test_rome_update_equals_the_straightforward_one(family, update_key):
    loaded = tiny_loaded(family)
    hparams = ROMEHyperParams(layers=[1], update_key=update_key, **VALUE)
    ours = ROMEEditor(hparams, loaded).rank_one_update(loaded.model, REQUEST)
    reference = ReferenceROME(hparams, loaded).rank_one_update(loaded.model, REQUEST)
    assert ours.delta.norm() > 0
    assert relative(ours.matrix(), reference.matrix()) < 1e-4
    torch.testing.assert_close(ours.key, reference.key, rtol=1e-5, atol=1e-7)


def test_the_two_rome_keys_give_different_updates():
    """The plain prompt's key differs from the template mean, so the choice is measurable."""
    loaded = tiny_loaded("llama")
    updates = [ROMEEditor(ROMEHyperParams(layers=[1], update_key=key, **VALUE), loaded).rank_one_update(loaded.model, REQUEST)
               for key in ("prompt", "averaged")]
    assert relative(updates[0].matrix(), updates[1].matrix()) > 1e-3


def project_updates(editor: MEMITEditor) -> dict[str, torch.Tensor]:
    """The (out, in) change MEMIT's batch edit makes to each projection; the model is restored."""
    model = editor.loaded.model
    params = dict(model.named_parameters())
    delta = editor.apply(model, editor.loaded.tokenizer, BATCH)
    transposed = editor.loaded.modules.weight_transposed
    changes = {}
    for name in editor.module_names:
        change = params[f"{name}.weight"].detach().double() - delta.originals[f"{name}.weight"].double()
        changes[name] = change.T if transposed else change
    delta.restore(model)
    return changes


@pytest.mark.parametrize("family, key_averaging", MEMIT_CASES)
def test_memit_batch_update_equals_the_straightforward_one(family, key_averaging):
    loaded = tiny_loaded(family)
    # Layer 0's keys come from little more than the 63 token embeddings: its C is near singular (GPT-J: 10⁹).
    hparams = MEMITHyperParams(layers=[1, 2], key_averaging=key_averaging, **{**VALUE, "clamp_norm_factor": 0.75},
                               mom2_update_weight=1.0)
    ours = project_updates(MEMITEditor(hparams, loaded))
    original = {name: value.clone() for name, value in loaded.model.state_dict().items()}
    reference = ReferenceMEMIT(hparams, loaded).updates(loaded.model, BATCH)
    loaded.model.load_state_dict(original)
    for name in ours:
        assert relative(ours[name], reference[name]) < 1e-4, name


def test_grouped_key_averaging_weighs_the_plain_prompt_one_half():
    """The published nesting with one group of 5 sampled templates: "{}" 1/2, each template 1/10."""
    keys = torch.randn(2, 6, 4, dtype=torch.float64)
    weights = torch.tensor([1 / 2] + [1 / 10] * 5, dtype=torch.float64)
    torch.testing.assert_close(average_keys(keys, [1, 5]), (weights[None, :, None] * keys).sum(dim=1))
    torch.testing.assert_close(average_keys(keys, None), keys.mean(dim=1))
    torch.testing.assert_close(average_keys(keys, [1, 0, 5]), average_keys(keys, [1, 5]))
    with pytest.raises(ValueError, match="do not add up to 6"):
        average_keys(keys, [1, 4])

"""The tracing tool on tiny random models of every family: read, patch at positions, stop early, skip."""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_model

from pytest_kedit.model.architectures import module_map
from pytest_kedit.model.tracing import Patch, StopForward, Trace, pad, skipped

PROMPTS = ["the capital of France is Paris", "Hamlet was a notable work of", "the mother of Marie"]


def tiny(family: str):
    model, tokenizer = tiny_model(family)
    modules = module_map(model)
    batch = pad([tokenizer(p)["input_ids"] for p in PROMPTS], tokenizer.pad_token_id, torch.device("cpu"))
    return model, modules, batch


def layer(modules, index: int) -> str:
    return f"{modules.layers}.{index}"


def hidden_states(model, batch) -> tuple[torch.Tensor, ...]:
    """The embeddings, then every layer's output (the last one after the final norm)."""
    with torch.no_grad():
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True).hidden_states


def test_pad_right_and_left():
    batch = pad([[5, 6, 7], [8]], 0, torch.device("cpu"))
    assert batch.input_ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch.lengths.tolist() == [3, 1]
    left = pad([[5, 6, 7], [8]], 0, torch.device("cpu"), left=True)
    assert left.input_ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert left.attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pad([[], []], 0, torch.device("cpu")).input_ids.shape == (2, 0)


def test_reads_the_input_and_output_of_layers(family):
    model, modules, batch = tiny(family)
    expected = hidden_states(model, batch)
    names = [layer(modules, 0), layer(modules, 1)]
    with torch.no_grad(), Trace(model, names, retain_input=True, retain_output=True) as trace:
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    torch.testing.assert_close(trace.output(names[0]), expected[1], rtol=0, atol=0)
    torch.testing.assert_close(trace.input(names[1]), expected[1], rtol=0, atol=0)
    torch.testing.assert_close(trace.output(names[1]), expected[2], rtol=0, atol=0)
    assert not trace.output(names[0]).requires_grad


def test_a_patch_changes_the_output_at_the_given_positions_only(family):
    model, modules, batch = tiny(family)
    shift = torch.randn(model.config.get_text_config().hidden_size)
    rows, cols = torch.tensor([0, 2]), torch.tensor([3, 1])
    site, above = layer(modules, 0), layer(modules, 1)
    patch = Patch(rows, cols, lambda h: h + shift)
    with (torch.no_grad(), Trace(model, site, retain_output=True, patch_output=patch) as at_site,
          Trace(model, above, retain_input=True) as at_above):
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    before, after = at_site.output(site), at_above.input(above)  # the site's output before and after the patch
    torch.testing.assert_close(after[rows, cols], before[rows, cols] + shift, rtol=0, atol=0)
    unchanged = torch.ones(before.shape[:2], dtype=torch.bool)
    unchanged[rows, cols] = False
    assert torch.equal(after[unchanged], before[unchanged])


def test_a_patched_input_is_what_the_module_computes_on(family):
    model, modules, batch = tiny(family)
    projection = modules.mlp_out.format(1)
    module = model.get_submodule(projection)
    rows, cols = torch.tensor([1]), torch.tensor([2])
    with torch.no_grad(), Trace(model, projection, retain_input=True, retain_output=True) as plain:
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    with torch.no_grad(), Trace(model, projection, retain_output=True, patch_input=Patch(rows, cols, torch.zeros_like)) as zeroed:
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    key = plain.input(projection).clone()
    key[rows, cols] = 0
    with torch.no_grad():
        torch.testing.assert_close(zeroed.output(projection), module(key), rtol=0, atol=0)
    assert not torch.equal(zeroed.output(projection), plain.output(projection))


def test_patches_are_differentiable():
    model, modules, batch = tiny("llama")
    shift = torch.zeros(model.config.hidden_size, requires_grad=True)
    every_row = torch.arange(len(PROMPTS))
    with Trace(model, layer(modules, 1), patch_output=Patch(every_row, torch.zeros_like(every_row), lambda h: h + shift)):
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    logits[:, -1].sum().backward()
    assert shift.grad is not None and shift.grad.norm() > 0


def test_a_stopping_trace_ends_the_pass_once_all_it_hooks_has_run(family):
    model, modules, batch = tiny(family)
    names = [layer(modules, 1), modules.mlp_out.format(0)]
    top = layer(modules, modules.n_layers(model) - 1)
    ran = []
    with torch.no_grad(), Trace(model, top, retain_output=True) as at_top, Trace(model, names, retain_input=True, retain_output=True, stop=True) as trace:
        model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        ran.append("after the forward call")
    assert ran == []
    with pytest.raises(LookupError, match="did not run"):
        at_top.output(top)  # the layers above the last traced module did not run
    assert all(trace.input(name) is not None and trace.output(name) is not None for name in names)


def test_a_trace_of_inputs_stops_before_the_module_runs(family):
    model, modules, batch = tiny(family)
    projection = modules.mlp_out.format(1)
    with torch.no_grad(), Trace(model, projection, retain_output=True) as outputs, Trace(model, projection, retain_input=True, stop=True) as inputs:
        model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    assert inputs.input(projection).shape[:2] == batch.input_ids.shape
    with pytest.raises(LookupError):
        outputs.output(projection)


def test_a_trace_catches_only_its_own_stop():
    model, modules, _ = tiny("gpt2")
    other = Trace(model, layer(modules, 1))
    with pytest.raises(StopForward), Trace(model, layer(modules, 0), stop=True):
        raise StopForward(other)
    assert all(not module._forward_hooks and not module._forward_pre_hooks for module in model.modules())


def test_skipped_layers_return_their_recorded_output_without_running(family):
    model, modules, batch = tiny(family)
    below = [layer(modules, 0), layer(modules, 1)]
    inside = modules.mlp_out.format(0)
    with torch.no_grad(), Trace(model, below[-1], retain_output=True) as recorded:
        expected = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    with torch.no_grad(), skipped(model, below, recorded.output(below[-1])), Trace(model, inside, retain_output=True) as lower:
        got = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    assert torch.equal(got, expected)
    with pytest.raises(LookupError):
        lower.output(inside)  # the skipped layers did not run
    assert all("forward" not in vars(model.get_submodule(name)) for name in below)

"""The harness: each split's plan carried out on tiny models, bit-exact restore, order independence."""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_loaded

from pytest_kedit.benchmark.registry import PAPER_BENCHMARKS, SPLITS, splits_of
from pytest_kedit.dataset.sources import load_suite
from pytest_kedit.editors.base import Editor, WeightDelta, snapshot
from pytest_kedit.editors.ft import FTEditor, FTHyperParams
from pytest_kedit.run.harness import EditorContractError, Harness


@pytest.fixture(scope="module")
def suite():
    return load_suite(None, tuple(SPLITS), limit=2)


def ft_harness(family: str = "llama", **hparams) -> Harness:
    loaded = tiny_loaded(family)
    editor = FTEditor(FTHyperParams(layers=[1], num_steps=4, lr=1e-2, **hparams), loaded)
    return Harness(loaded, editor)


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def assert_bit_identical(before: dict[str, torch.Tensor], model: torch.nn.Module) -> None:
    for name, p in model.named_parameters():
        assert torch.equal(before[name], p), name


@pytest.mark.parametrize("split", [split for benchmark in PAPER_BENCHMARKS for split in splits_of(benchmark)])
def test_every_split_of_the_paper_gives_its_metrics_and_restores_the_model_bit_exactly(suite, split):
    harness = ft_harness()
    before = state(harness.model)
    result = harness.run(suite.splits[split][0])
    assert set(result.metrics) == set(SPLITS[split].metrics)
    assert set(result.evidence) == set(SPLITS[split].metrics)
    assert list(result.probabilities) == [stage.state for stage in SPLITS[split].plan(suite.splits[split][0])]
    assert result.timings["edit"] > 0 and result.timings["probe"] > 0
    assert_bit_identical(before, harness.model)


def test_the_edit_changes_the_model_between_probes(suite):
    harness = ft_harness()
    result = harness.run(suite.splits["reverse"][0])
    assert result.probabilities["theta_m"]["k_o"] != result.probabilities["theta_prime"]["k_o"]


@pytest.mark.slow
def test_a_case_run_twice_and_cases_in_either_order_give_identical_metrics(suite):
    harness = ft_harness()
    a, b = suite.splits["composite"][0], suite.splits["hard"][0]
    first = [harness.run(a).metrics, harness.run(b).metrics]
    second = [harness.run(b).metrics, harness.run(a).metrics]
    assert first == second[::-1]
    assert harness.run(a).probabilities == harness.run(a).probabilities


def test_ft_objectives_teacher_forcing_and_prompt_last_both_raise_the_target(suite):
    from pytest_kedit.benchmark.cases import EditRequest
    from pytest_kedit.model.probe import probe

    request = EditRequest(subject="France", prompt="the capital of {} is", target="Rome Italy")
    results = {}
    for objective in ("target_new", "prompt_last"):
        harness = ft_harness(objective_optimization=objective)
        (before,) = probe(harness.model, harness.encoder, [("the capital of France is", "Rome Italy")])
        delta = harness.editor.apply(harness.model, harness.loaded.tokenizer, [request])
        (after,) = probe(harness.model, harness.encoder, [("the capital of France is", "Rome Italy")])
        results[objective] = harness.model.get_parameter(next(iter(delta.originals))).clone()
        delta.restore(harness.model)
        assert after > before, objective
    assert not torch.equal(results["target_new"], results["prompt_last"])


class _Sneaky(Editor):
    """Changes a parameter without saving it: the harness must notice."""

    name = "sneaky"
    hparams_class = dict

    def apply(self, model, tokenizer, requests) -> WeightDelta:
        with torch.no_grad():
            next(model.parameters()).add_(1.0)
        return snapshot(model, [])


def test_an_editor_that_hides_a_change_is_reported(suite):
    loaded = tiny_loaded("gpt2")
    with pytest.raises(EditorContractError, match="without saving them"):
        Harness(loaded, _Sneaky({}, loaded)).run(suite.splits["reverse"][0])


class _Remembering(FTEditor):
    """FT that also remembers the targets it wrote, as a lifelong editor keeps keys or memories;
    its delta puts the memory back as it was before the edit."""

    def __init__(self, hparams, loaded):
        super().__init__(hparams, loaded)
        self.memory: tuple[str, ...] = ()
        self.seen: list[tuple[str, ...]] = []

    def apply(self, model, tokenizer, requests) -> WeightDelta:
        self.seen.append(self.memory)
        delta = super().apply(model, tokenizer, requests)
        before, self.memory = self.memory, (*self.memory, *(r.target for r in requests))
        delta.undo.append(lambda: setattr(self, "memory", before))
        return delta


def test_the_restore_puts_the_editors_state_back_with_the_weights(suite):
    """Coverage: e2 alone from θ, then e1 and e2 from θ again: each stage starts from an empty
    memory, e2 after e1 sees e1's target, and after the case the memory is empty."""
    loaded = tiny_loaded("gpt2")
    editor = _Remembering(FTHyperParams(layers=[1], num_steps=2), loaded)
    case = suite.splits["coverage"][0]
    e1, e2 = (edit.new.label for edit in case.edits)
    Harness(loaded, editor).run(case)
    assert editor.seen == [(), (), (e1,)]
    assert editor.memory == ()


def test_a_merged_delta_puts_the_state_back_last_edit_first():
    calls: list[str] = []
    first = WeightDelta(undo=[lambda: calls.append("first")])
    later = WeightDelta(undo=[lambda: calls.append("later a"), lambda: calls.append("later b")])
    first.then(later).restore(torch.nn.Linear(1, 1))
    assert calls == ["later b", "later a", "first"]


class _MultiLabelFT(FTEditor):
    """FT in Multi-Label Edit mode, remembering the batches it was given."""

    multi_label = True

    def __init__(self, hparams, loaded):
        super().__init__(hparams, loaded)
        self.batches: list[list] = []

    def apply(self, model, tokenizer, requests) -> WeightDelta:
        self.batches.append(list(requests))
        return super().apply(model, tokenizer, requests)


def test_multi_label_round_edit_writes_every_true_object_in_one_batch(suite):
    loaded = tiny_loaded("llama")
    editor = _MultiLabelFT(FTHyperParams(layers=[1], num_steps=2), loaded)
    case = suite.splits["easy"][0]
    Harness(loaded, editor).run(case)
    assert [len(b) for b in editor.batches] == [1, len(case.true_objects)]
    assert {r.target for r in editor.batches[1]} == {o.label for o in case.true_objects}

"""Streams carried out on tiny random models of every family: the held-out perplexity and the update
norms the harness measures, a stream that never restores until its end and then restores bit for
bit, an editor that changes nothing, and real editors whose updates grow with the edits."""

from __future__ import annotations

import math

import pytest
import torch
from test_harness import _Remembering, assert_bit_identical, state
from test_memit import tiny_memit
from test_rome import TINY_STATISTICS, TINY_VALUE, one_thread_and_private_cache, tiny_loaded, tiny_rome  # noqa: F401

from pytest_kedit.benchmark.cases import Edit, Entity, Fact, Relation, StreamCase
from pytest_kedit.benchmark.plans import PERPLEXITY
from pytest_kedit.benchmark.streams import THETA, StreamSettings, state_after
from pytest_kedit.editors.base import Editor, WeightDelta, snapshot
from pytest_kedit.editors.ft import FTHyperParams
from pytest_kedit.model.loading import LoadedModel
from pytest_kedit.model.perplexity import perplexity, windows
from pytest_kedit.model.probe import probe
from pytest_kedit.model.update_norms import relative_update_norms
from pytest_kedit.run.harness import Harness

CAPITAL = Relation("P36", "the capital of {} is", ("the capital city of {} is", "{} 's capital is", "the city of {} is"))
LANGUAGE = Relation("P37", "the official language of {} is", ("the language of {} is", "in {} the language is"))
HELD_OUT = ("the capital of France is Paris . the official language of Italy is Italian .",
            "Alice was born in Rome , Bob was born in Berlin and Carol was born in Madrid .")
#: (subject, relation, one object, another): the stream's edits, oriented on the model by :func:`tiny_stream`
EDITS = (("France", CAPITAL, "Paris", "Rome"), ("Italy", CAPITAL, "Rome", "Berlin"), ("Germany", CAPITAL, "Berlin", "Madrid"),
         ("France", LANGUAGE, "French", "German"), ("Italy", LANGUAGE, "Italian", "English"), ("Spain", CAPITAL, "Madrid", "Paris"))


def tiny_stream(loaded: LoadedModel) -> StreamCase:
    """Six edits whose old object the model prefers to the new one on the edit prompt (as the
    knowledge check keeps them), two neighbours for France's language, three locality facts."""
    from pytest_kedit.model.probe import Encoder

    encoder = Encoder(loaded.tokenizer)
    edits = []
    for subject, relation, one, other in EDITS:
        p_one, p_other = probe(loaded.model, encoder, [(relation.prompt.format(subject), o) for o in (one, other)])
        old, new = (one, other) if p_one > p_other else (other, one)
        edits.append(Edit(Entity(subject), relation, Entity(old), Entity(new)))
    neighbourhood = tuple((tuple(Fact(Entity(s), LANGUAGE, edit.old) for s in ("Switzerland", "Canada"))
                           if edit.relation is LANGUAGE and edit.subject.label == "France" else ()) for edit in edits)
    locality = (Fact(Entity("Germany"), LANGUAGE, Entity("German")), Fact(Entity("Switzerland"), CAPITAL, Entity("Berlin")),
                Fact(Entity("Canada"), CAPITAL, Entity("Paris")))
    return StreamCase("sequential-0000", "sequential", 0, tuple(edits), neighbourhood, locality, HELD_OUT)


class _Unchanged(Editor):
    """Changes nothing, and says so; counts its calls."""

    name = "unchanged"
    hparams_class = dict

    def __init__(self, hparams, loaded):
        super().__init__(hparams, loaded)
        self.calls = 0

    def apply(self, model, tokenizer, requests) -> WeightDelta:
        self.calls += 1
        return snapshot(model, [])


def test_perplexity_of_a_text_is_its_windows_perplexity_and_windows_cover_it(family: str):
    loaded = tiny_loaded(family)
    ids = loaded.tokenizer(HELD_OUT[1])["input_ids"]
    assert [token for piece in windows(ids, 5) for token in piece] == ids and all(len(w) <= 5 for w in windows(ids, 5))
    # an independent computation: the model's own loss (the mean over a sequence's tokens after the
    # first), one sequence at a time, weighted by its scored tokens
    pieces = [piece for text in HELD_OUT for piece in windows(loaded.tokenizer(text)["input_ids"], 6) if len(piece) > 1]
    with torch.no_grad():
        losses = [float(loaded.model(input_ids=torch.tensor([piece]), labels=torch.tensor([piece])).loss) * (len(piece) - 1)
                  for piece in pieces]
    expected = math.exp(sum(losses) / sum(len(piece) - 1 for piece in pieces))
    assert perplexity(loaded.model, loaded.tokenizer, HELD_OUT, 6) == pytest.approx(expected, rel=1e-5)


def test_relative_update_norms_are_zero_for_no_change_and_the_share_of_the_weights_size_moved():
    loaded = tiny_loaded("llama")
    name = "model.layers.1.mlp.down_proj.weight"
    delta = snapshot(loaded.model, [name])
    assert relative_update_norms(loaded.model, delta.originals) == {name: 0.0}
    with torch.no_grad():
        loaded.model.get_parameter(name).mul_(1.5)
    assert relative_update_norms(loaded.model, delta.originals)[name] == pytest.approx(0.5)
    delta.restore(loaded.model)


def test_a_stream_of_an_editor_that_changes_nothing_scores_no_edit_and_breaks_nothing(family: str):
    loaded = tiny_loaded(family)
    case = tiny_stream(loaded)
    editor = _Unchanged({}, loaded)
    result = Harness(loaded, editor).run(case)
    assert editor.calls == len(case.edits)
    assert result.metrics["es"] == result.metrics["es_imm"] == result.metrics["retention"] == 0.0
    assert result.metrics["gs"] == result.metrics["gs_imm"]
    assert (result.metrics["loc"], result.metrics["ppl"], result.metrics["norm"]) == (1.0, 1.0, 0.0)
    assert result.metrics["collapse_at"] == len(case.edits)
    for point in result.curve["checkpoints"]:
        assert (point["loc"], point["ppl"], point["norm"], point["es"], point["es_imm"]) == (1.0, 1.0, 0.0, 0.0, 0.0)
    thetas = {state: values[PERPLEXITY] for state, values in result.probabilities.items() if PERPLEXITY in values}
    assert set(thetas) == {THETA, *(state_after(n) for n in range(1, 7))} and len(set(thetas.values())) == 1


def test_a_stream_never_restores_before_its_end_and_then_restores_the_model_and_the_editor(family: str):
    """The remembering editor (FT, which takes a batch in one call) sees the targets of every
    earlier batch of the stream: no restore in between; after the stream, the weights are
    bit-identical and its memory is empty."""
    loaded = tiny_loaded(family)
    case = tiny_stream(loaded)
    editor = _Remembering(FTHyperParams(layers=[1], num_steps=2, lr=1e-2), loaded)
    before = state(loaded.model)
    result = Harness(loaded, editor, stream=StreamSettings(batch=2, every=4)).run(case)
    targets = [edit.new.label for edit in case.edits]
    assert editor.seen == [(), tuple(targets[:2]), tuple(targets[:4])] and editor.memory == ()
    assert_bit_identical(before, loaded.model)
    assert [point["edits"] for point in result.curve["checkpoints"]] == [4, 6]
    assert [batch["edits"] for batch in result.curve["batches"]] == [2, 4, 6]


@pytest.mark.parametrize("method", ["rome", "memit"])
def test_a_real_editor_moves_the_weights_more_with_more_edits_and_the_stream_restores_bit_exactly(method: str):
    loaded = tiny_loaded("llama")
    case = tiny_stream(loaded)
    editor = tiny_rome(loaded) if method == "rome" else tiny_memit(loaded)
    before = state(loaded.model)
    result = Harness(loaded, editor, stream=StreamSettings(batch=2, every=2)).run(case)
    norms = [batch["norm"] for batch in result.curve["batches"]]
    assert 0 < norms[0] < norms[-1] and result.metrics["norm"] == norms[-1]
    assert set(result.curve["batches"][-1]["norms"]) == {f"{name}.weight" for name in editor.module_names}
    assert_bit_identical(before, loaded.model)


def test_the_original_models_perplexity_is_remembered_like_its_probabilities(family: str):
    loaded = tiny_loaded(family)
    case = tiny_stream(loaded)
    first = Harness(loaded, _Unchanged({}, loaded)).run(case)
    remembered = Harness(loaded, _Unchanged({}, loaded)).original_probes
    assert remembered.perplexity(HELD_OUT, Harness(loaded, _Unchanged({}, loaded)).perplexity_window) == \
        first.probabilities[THETA][PERPLEXITY]


def test_memit_and_its_kin_write_a_checkpoints_edits_at_once_and_the_others_one_edit_at_a_time():
    from pytest_kedit.editors import BUILTIN, editor_class

    writes_batches = {method for method in BUILTIN if editor_class(method).stream_batches}
    assert writes_batches == {"memit", "memit-mle", "alphaedit", "alphaedit-mle", "emmet"}
    loaded = tiny_loaded("gpt2")
    assert Harness(loaded, tiny_memit(loaded)).stream.schedule(100).batch == 10
    assert Harness(loaded, tiny_rome(loaded)).stream.schedule(100).batch == 1


class _ThreadCounting(_Unchanged):
    """Changes nothing; keeps torch's thread count at each call."""

    def __init__(self, hparams, loaded):
        super().__init__(hparams, loaded)
        self.threads: list[int] = []

    def apply(self, model, tokenizer, requests) -> WeightDelta:
        self.threads.append(torch.get_num_threads())
        return super().apply(model, tokenizer, requests)


class _OneThreadCounting(_ThreadCounting):
    edits_on_one_thread = True


def test_a_streams_edits_run_on_one_thread_and_a_cases_on_every_thread():
    """A stream's edits build on each other, and every case on the carried ones, so they run on one
    thread in every thread layout; the edits of a paper case keep the threads the run has, unless
    the editor asks for one (``edits_on_one_thread``), and the run keeps them after either."""
    from pytest_kedit.dataset.sources import load_suite

    loaded = tiny_loaded("llama")
    editor = _ThreadCounting({}, loaded)
    harness = Harness(loaded, editor)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        harness.run(tiny_stream(loaded))
        assert editor.threads == [1] * len(EDITS) and torch.get_num_threads() == 2
        editor.threads.clear()
        harness.carry(tiny_stream(loaded).edits[:3])  # --kedit-carry: every case builds on them
        assert editor.threads == [1] * 3 and torch.get_num_threads() == 2
        editor.threads.clear()
        case = load_suite(None, ("coverage",), limit=1).splits["coverage"][0]
        harness.run(case)
        assert editor.threads and set(editor.threads) == {2}
        asking = _OneThreadCounting({}, loaded)
        Harness(loaded, asking).run(case)
        assert asking.threads and set(asking.threads) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)

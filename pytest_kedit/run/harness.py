"""Carrying a case's plan out on a model: the edits, the probes, and the bit-exact restore.

The plan (:mod:`pytest_kedit.benchmark.plans`) says which model states to reach and which facts to
probe in each (and, for a stream, where to measure the held-out perplexity and the update norms);
the harness applies the edits through the editor, measures, restores the original weights and the
editor's state (``WeightDelta.restore``) after every state that the next one does not continue,
and scores the probabilities (:mod:`pytest_kedit.benchmark.scoring`). A stream's states each
continue the last, so it is restored once, at its end. After :meth:`Harness.run` the model and
the editor are as they were.

:meth:`Harness.carry` (``--kedit-carry``) edits the model once, before any case, and is never
undone: the carried model is then the θ every case starts from and is restored to. Its
probabilities are probed live in every case, never read from (or written to) the cache of the
original model's (:mod:`pytest_kedit.model.original_probes`), which holds the loaded weights' alone.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from pytest_kedit.benchmark import metrics
from pytest_kedit.benchmark.carry import carry_batches
from pytest_kedit.benchmark.cases import Case, Edit, Query, mean_per_query
from pytest_kedit.benchmark.plans import PERPLEXITY, EditBatch, Stage, norm_name
from pytest_kedit.benchmark.protocol import PAPER, Protocol
from pytest_kedit.benchmark.registry import SEQUENTIAL, SPLITS
from pytest_kedit.benchmark.streams import DEFAULT_STREAM, StreamSettings
from pytest_kedit.dataset.input_length import context_length
from pytest_kedit.editors.base import Editor, WeightDelta
from pytest_kedit.errors import KeditError
from pytest_kedit.model.original_probes import OriginalProbes
from pytest_kedit.model.perplexity import perplexity
from pytest_kedit.model.probe import Encoder, probe
from pytest_kedit.model.threads import one_thread
from pytest_kedit.model.timing import PhaseTimer
from pytest_kedit.model.update_norms import relative_update_norms
from pytest_kedit.results.record import PHASES

if TYPE_CHECKING:
    from pytest_kedit.model.loading import LoadedModel

#: The longest window of a held-out text scored at once, in tokens (less when the model's context is shorter).
PERPLEXITY_WINDOW = 1024

@dataclass
class CaseResult:
    """What running one case produced."""

    metrics: dict[str, float]
    #: state -> fact name -> p, every probability behind the metrics
    probabilities: dict[str, dict[str, float]]
    #: per metric, the probabilities that decided it, for failure messages
    evidence: dict[str, str]
    #: seconds per phase of :data:`PHASES`
    timings: dict[str, float] = field(default_factory=dict)
    #: a stream's curve (:func:`pytest_kedit.benchmark.scoring.sequential`); None for other cases
    curve: dict[str, Any] | None = None


class EditorContractError(KeditError):
    """An editor changed parameters it did not report, so the model cannot be restored."""


class Harness:
    """Runs cases on one model with one editor; after every case the model is as it was."""

    def __init__(self, loaded: LoadedModel, editor: Editor, protocol: Protocol = PAPER, seed: int = 0,
                 stream: StreamSettings = DEFAULT_STREAM):
        if protocol.distortion not in metrics.DISTORTION_SCALINGS:
            raise KeditError(f"unknown distortion scaling {protocol.distortion!r}; use one of {metrics.DISTORTION_SCALINGS}")
        self.loaded = loaded
        self.model = loaded.model
        self.editor = editor
        #: the choices of --kedit-protocol: how prompts are scored, Others, D's scaling
        self.protocol = protocol
        self.encoder = Encoder(loaded.tokenizer, protocol.keep_trailing_space)
        self.seed = seed
        #: how streams run (--kedit-sequential*), with whether this editor writes batches of edits
        self.stream = dataclasses.replace(stream, batched=editor.stream_batches)
        self.original_probes = OriginalProbes(loaded.fingerprint, loaded.dtype, loaded.device, protocol.keep_trailing_space)
        #: the windows a held-out text is scored in (:mod:`pytest_kedit.model.perplexity`)
        self.perplexity_window = min(PERPLEXITY_WINDOW, context_length(loaded.model.config, loaded.tokenizer) or PERPLEXITY_WINDOW)
        #: how many edits the model carries (:meth:`carry`): θ is then not the loaded model
        self.carried = 0
        self._timer = PhaseTimer(PHASES)

    def carry(self, edits: Sequence[Edit]) -> None:
        """Apply ``edits`` to the model for good, in the batches of a stream of them
        (:func:`~pytest_kedit.benchmark.carry.carry_batches`), seeded by the run's seed alone so that
        every process carries the same model; before the cases that are to start from them. On one
        CPU thread, as a stream's edits (:mod:`pytest_kedit.model.threads`): every case builds on them."""
        torch.manual_seed(self.seed)
        for batch in carry_batches(edits, self.stream):
            self._edit(batch, builds_on=True)
        self.carried += len(edits)

    def run(self, case: Case) -> CaseResult:
        """Reach and probe every state of the case's plan, restore the model, score."""
        split = SPLITS[case.split]
        self._timer = PhaseTimer(PHASES)
        torch.manual_seed(self.seed + zlib.crc32(case.case_id.encode()))
        plan = split.plan(case, self.editor.multi_label, self.protocol, self.stream)
        probabilities = self._carry_out(plan, builds_on=split.benchmark is SEQUENTIAL)
        scores = split.score(case, probabilities, self.protocol, self.stream)
        return CaseResult(scores.values, probabilities, scores.evidence, dict(self._timer.seconds), scores.curve)

    def _carry_out(self, plan: Sequence[Stage], builds_on: bool) -> dict[str, dict[str, float]]:
        """Reach and probe every state of ``plan``; ``builds_on``: its edits build on each other (a stream)."""
        probabilities: dict[str, dict[str, float]] = {}
        applied: tuple[EditBatch, ...] = ()
        edited: _Edited | None = None
        try:
            for stage in plan:
                if edited is not None and stage.edits[: len(applied)] != applied:
                    restoring, edited, applied = edited, None, ()
                    self._restore(restoring)
                for batch in stage.edits[len(applied) :]:
                    edited = edited or _Edited(WeightDelta(), _parameter_versions(self.model))
                    edited.delta = edited.delta.then(self._edit(batch, builds_on))
                applied = stage.edits
                original = not stage.edits and not self.carried
                p = self._measure([query for _, query in stage.probes], original)
                values = dict(zip((name for name, _ in stage.probes), p))
                if stage.perplexity:
                    values[PERPLEXITY] = self._perplexity(stage.perplexity, original)
                if stage.norms:
                    changed = relative_update_norms(self.model, edited.delta.originals if edited else {})
                    values.update((norm_name(name), norm) for name, norm in changed.items())
                probabilities[stage.state] = values
        finally:
            if edited is not None:
                self._restore(edited)
        return probabilities

    # -- model states ------------------------------------------------------------------------

    def _measure(self, queries: Sequence[Query], original: bool = False) -> list[float]:
        """p of each query on the current model; ``original``: the model is the loaded one, look in the cache first."""
        if not queries:
            return []
        pairs = [pair for q in queries for pair in q.pairs()]
        with self._timer("probe"):
            probs = self.original_probes.lookup(pairs) if original else None
            if probs is None:
                probs = probe(self.model, self.encoder, pairs)
                if original:
                    self.original_probes.remember(pairs, probs)
        return mean_per_query(queries, probs)

    def _perplexity(self, texts: Sequence[str], original: bool = False) -> float:
        """The perplexity of ``texts`` on the current model; ``original``: the model is the loaded one, look in the cache first."""
        with self._timer("probe"):
            value = self.original_probes.perplexity(texts, self.perplexity_window) if original else None
            if value is None:
                value = perplexity(self.model, self.loaded.tokenizer, texts, self.perplexity_window)
                if original:
                    self.original_probes.remember_perplexity(texts, self.perplexity_window, value)
        return value

    def _edit(self, requests: EditBatch, builds_on: bool) -> WeightDelta:
        """Apply ``requests``; edits that later edits build on (``builds_on``: a stream's, the
        carried ones), and every edit of an editor that asks for it (``edits_on_one_thread``), on
        one CPU thread (:mod:`pytest_kedit.model.threads`)."""
        with self._timer("edit"), (one_thread() if builds_on or self.editor.edits_on_one_thread else nullcontext()):
            if self.editor.batched:
                return self.editor.apply(self.model, self.loaded.tokenizer, list(requests))
            delta = WeightDelta()
            for request in requests:
                delta = delta.then(self.editor.apply(self.model, self.loaded.tokenizer, [request]))
            return delta

    def _restore(self, edited: _Edited) -> None:
        """Write back what the edits changed, and check that they reported every change."""
        with self._timer("restore"):
            edited.delta.restore(self.model)
        changed = [name for name, version in _parameter_versions(self.model).items()
                   if version != edited.versions[name] and name not in edited.delta.originals]
        if changed:
            raise EditorContractError(
                f"editor {self.editor.name!r} changed {changed[:5]} without saving them in its WeightDelta "
                "(call pytest_kedit.editors.base.snapshot before changing a parameter)"
            )


@dataclass
class _Edited:
    """The model away from θ: what the edits so far changed, and θ's parameter versions."""

    delta: WeightDelta
    versions: dict[str, tuple[int, int]]


def _parameter_versions(model: torch.nn.Module) -> dict[str, tuple[int, int]]:
    """In-place changes bump a tensor's version counter; reassigning ``.data`` changes its pointer."""
    return {name: (p._version, p.data_ptr()) for name, p in model.named_parameters()}

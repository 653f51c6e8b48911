"""How a stream runs, as data: how many of its edits, in batches of how many, measured how often,
and which evaluation scheme scores its edits. Pure: the plan of a stream
(:func:`pytest_kedit.benchmark.plans.sequential`) and its scoring (:func:`pytest_kedit.benchmark.scoring.sequential`)
read the same :class:`Schedule`.

A stream of N edits is applied in batches of B requests (one editor call per batch for an editor
that takes a batch at once, B calls of one request otherwise), without restoring in between. The
model after the first n edits is the state ``theta_n`` (:func:`state_after`), the original model
``theta``. After every batch the update norms are measured; at every checkpoint (about every K
edits, and always after the last) everything else: the edits so far, their neighbourhood facts,
the locality facts and the held-out text's perplexity. Schemes:

- ``immediate``: each edit is scored right after its batch (in the state of its batch's end);
- ``final``: every edit so far is scored on the checkpoint's model (at the last one, the final model);
- ``both``: each edit both ways, and retention compares the two.

The two schemes give different numbers for the same method (an edit that took can be undone by
later ones), so their metrics have different keys (``es_imm`` and ``es``): they never share a column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: The evaluation schemes, as ``--kedit-sequential-scheme`` names them.
SCHEMES = ("immediate", "final", "both")
#: Without ``--kedit-sequential-every``, a stream has this many checkpoints (fewer when it is shorter).
DEFAULT_CHECKPOINTS = 10
#: The original model's state.
THETA = "theta"


def state_after(edits: int) -> str:
    """The name of the model state after the first ``edits`` edits of a stream: ``theta_{edits}``."""
    return f"{THETA}_{edits}"


@dataclass(frozen=True)
class StreamSettings:
    """The run's choices for every stream (``None``: the default, resolved per stream by
    :meth:`schedule`), whether the run's editor takes a batch of requests in one call, and how
    many edits of the data's stream the run carries into its other cases."""

    #: N: at most this many edits of each stream (``--kedit-sequential``); default: all of them
    edits: int | None = None
    #: B (``--kedit-sequential-batch``); default: K for an editor that writes batches, else 1
    batch: int | None = None
    #: K (``--kedit-sequential-every``); default: ⌈N / :data:`DEFAULT_CHECKPOINTS`⌉
    every: int | None = None
    #: one of :data:`SCHEMES` (``--kedit-sequential-scheme``)
    scheme: str = "both"
    #: the editor is made to write many edits in one update (``Editor.stream_batches``: MEMIT and its kin)
    batched: bool = False
    #: k (``--kedit-carry``): the edits of the data's stream a run applies once, before its
    #: ConflictEdit and RoundEdit cases, which then start from the edited model (:mod:`pytest_kedit.benchmark.carry`)
    carry: int = 0

    def given(self) -> dict[str, int | str] | None:
        """The options that differ from their defaults (what a stream's results, and with ``carry``
        every case's, depend on besides the data, the model and the method), None when none does:
        a run's provenance records it."""
        chosen: dict[str, int | str] = {
            name: value for name, value in (("edits", self.edits), ("batch", self.batch), ("every", self.every),
                                            ("scheme", self.scheme), ("carry", self.carry))
            if value is not None and value != getattr(DEFAULT_STREAM, name)}
        return chosen or None

    def schedule(self, length: int) -> Schedule:
        """The schedule of a stream of ``length`` edits: N = min(``edits``, ``length``) (all of
        them without ``edits``), K = ``every`` or ⌈N / 10⌉, B = ``batch``, or without it K for an
        editor that writes batches (one batch per checkpoint) and 1 otherwise. ValueError unless ``length``
        and every given number are at least 1 and ``scheme`` is one of :data:`SCHEMES`."""
        for name, value in (("length", length), ("edits", self.edits), ("batch", self.batch), ("every", self.every)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {self.scheme!r}; expected one of {', '.join(SCHEMES)}")
        n = length if self.edits is None else min(self.edits, length)
        every = self.every or math.ceil(n / DEFAULT_CHECKPOINTS)
        batch = self.batch or (every if self.batched else 1)
        return Schedule(n, batch, every, self.scheme)


@dataclass(frozen=True)
class Schedule:
    """One stream's run: its first ``edits`` (N) edits, in batches of ``batch`` (B), checkpoints
    about every ``every`` (K) edits, scored under ``scheme``."""

    edits: int
    batch: int
    every: int
    scheme: str

    @property
    def immediate(self) -> bool:
        """Each edit is scored right after its batch."""
        return self.scheme in ("immediate", "both")

    @property
    def final(self) -> bool:
        """Every edit so far is scored at each checkpoint."""
        return self.scheme in ("final", "both")

    def batch_ends(self) -> tuple[int, ...]:
        """How many edits are applied after each batch: B, 2B, ..., and N (the last batch holds
        the N mod B left over, when they are not zero)."""
        return (*range(self.batch, self.edits, self.batch), self.edits)

    def checkpoints(self) -> tuple[int, ...]:
        """The batch ends at which the model is measured: for j = 1, ..., ⌈N/K⌉ the first batch
        end at or after j·K edits (so N last), each once, increasing. When B divides K they are
        K, 2K, ... and N."""
        ends = {min(self.batch * math.ceil(j * self.every / self.batch), self.edits)
                for j in range(1, math.ceil(self.edits / self.every) + 1)}
        return tuple(sorted(ends))


#: Every option of a stream at its default (every plan and scoring takes stream settings; only streams read them).
DEFAULT_STREAM = StreamSettings()

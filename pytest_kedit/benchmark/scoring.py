"""A case's metrics and their evidence, as pure functions of the probabilities its plan
measured (:mod:`pytest_kedit.benchmark.plans`). No model here, so a whole split's scoring can be
checked with hypothesis on made-up probabilities.

``probabilities`` maps a model state (``theta``, ``theta_s``, ``theta_m``, ``theta_prime``; a
stream's ``theta_n``) to the probability of each fact probed there, under the names the plan gave
them (a stream's states also hold the measurements named in :mod:`pytest_kedit.benchmark.plans`).
The evidence of a metric is the line a failure message shows: the probabilities that decided it.
A stream's scores also carry its curve: the metrics at every checkpoint, the update norms after
every batch (:func:`sequential`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_kedit.benchmark import metrics
from pytest_kedit.benchmark.cases import ConflictCase, RoundCase, StreamCase
from pytest_kedit.benchmark.plans import PERPLEXITY, norms_of, others
from pytest_kedit.benchmark.protocol import PAPER, Protocol
from pytest_kedit.benchmark.streams import DEFAULT_STREAM, THETA, Schedule, StreamSettings, state_after

#: state -> fact name -> p
Probabilities = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class Scores:
    """Per metric key: its value, and the probabilities behind it."""

    values: dict[str, float]
    evidence: dict[str, str]
    #: a stream's curve (:func:`sequential`); None for a case of another split
    curve: dict[str, Any] | None = None


def coverage(case: ConflictCase, p: Probabilities, protocol: Protocol = PAPER,
             stream: StreamSettings = DEFAULT_STREAM) -> Scores:
    """Single Succ on θs; CS and CM with k_o = o2, k_n = o3."""
    single = p["theta_s"]
    scores = _conflict(p, {"cs": p["theta_prime"]["k_n"]})
    scores.values["single_succ"] = float(metrics.single_success(single["o3"], single["o2"]))
    scores.evidence["single_succ"] = _versus("p_θs(o3)", single["o3"], "p_θs(o2)", single["o2"])
    return scores


def reverse(case: ConflictCase, p: Probabilities, protocol: Protocol = PAPER,
            stream: StreamSettings = DEFAULT_STREAM) -> Scores:
    """CS_exp, CS_imp and CM."""
    after = p["theta_prime"]
    return _conflict(p, {"cs_exp": after["k_n_exp"], "cs_imp": after["k_n_imp"]})


def composite(case: ConflictCase, p: Probabilities, protocol: Protocol = PAPER,
              stream: StreamSettings = DEFAULT_STREAM) -> Scores:
    """CS_exp, CS_imp, CM, and TFD of the tied fact k_f from θ to θ'."""
    after = p["theta_prime"]
    scores = _conflict(p, {"cs_exp": after["k_n_exp"], "cs_imp": after["k_n_imp"]})
    before_kf, after_kf = p["theta"]["k_f"], after["k_f"]
    scores.values["tfd"] = metrics.tied_fact_damage(before_kf, after_kf)
    scores.evidence["tfd"] = f"p_θ(k_f)={before_kf:.3g}, p_θ'(k_f)={after_kf:.3g}"
    return scores


def round_trip(case: RoundCase, p: Probabilities, protocol: Protocol = PAPER,
               stream: StreamSettings = DEFAULT_STREAM) -> Scores:
    """Succ, D (scaled as ``protocol.distortion``), IR and FR over the true objects: o1, then
    Others (as ``protocol`` defines them, :func:`pytest_kedit.benchmark.plans.others`)."""
    before, mid, after = p["theta"], p["theta_m"], p["theta_prime"]
    labels = [case.edit.old.label, *(o.label for o in others(case, protocol))]
    p_before = [before[label] for label in labels]
    p_after = [after[label] for label in labels]
    o1_after, star_after = p_after[0], after["o*"]
    ignore_rate = metrics.ignore_rate(p_before[1:], p_after[1:])
    lost = [label for label, b, a in zip(labels[1:], p_before[1:], p_after[1:]) if b > a]
    lost_line = f"{len(lost)} of {len(labels) - 1} other true objects lost probability: {lost}"
    return Scores(
        values={
            "succ": metrics.round_success(mid["o*"], mid["o1"], o1_after, star_after),
            "d": metrics.distortion(p_before, p_after, scaling=protocol.distortion),
            "ir": ignore_rate,
            "fr": float(metrics.failure(ignore_rate)),
        },
        evidence={
            "succ": "; ".join((_versus("p_θm(o*)", mid["o*"], "p_θm(o1)", mid["o1"]),
                               _versus("p_θ'(o1)", o1_after, "p_θ'(o*)", star_after))),
            "d": f"P_θ={_fmt(p_before)}, P_θ'={_fmt(p_after)}",
            "ir": lost_line,
            "fr": lost_line,
        },
    )


def sequential(case: StreamCase, p: Probabilities, protocol: Protocol = PAPER,
               stream: StreamSettings = DEFAULT_STREAM) -> Scores:
    """The metrics of every checkpoint of the stream's schedule (``stream.schedule``) and the
    update norms after every batch, as the curve; the last checkpoint's metrics and the collapse
    point as the case's values. Which metrics a checkpoint has follows the scheme: ``es``,
    ``gs`` (final), ``es_imm``, ``gs_imm`` (immediate), ``retention`` (both); ``spec`` when an edit
    so far has neighbourhood facts; ``loc``, ``ppl`` and ``norm`` always."""
    schedule = stream.schedule(len(case.edits))
    before = p[THETA]
    made: list[Mapping[str, float]] = []  # per edit, the state right after its batch (immediate scheme)
    start = 0
    batches = []
    for end in schedule.batch_ends():
        state = p[state_after(end)]
        made += [state] * (end - start) if schedule.immediate else []
        norms = norms_of(state)
        batches.append({"edits": end, "norm": metrics.update_norm(norms.values()), "norms": norms})
        start = end
    points = [_checkpoint(case, schedule, before, p[state_after(n)], n, made) for n in schedule.checkpoints()]
    last = points[-1]
    values = dict(last.values)
    evidence = dict(last.evidence)
    values["collapse_at"] = float(metrics.collapse_point([point.edits for point in points],
                                                         [point.values["ppl"] for point in points],
                                                         [point.values["loc"] for point in points], schedule.edits))
    evidence["collapse_at"] = _collapse_line(points, int(values["collapse_at"]), schedule.edits)
    curve = {
        "schedule": dataclasses.asdict(schedule),
        "checkpoints": [{"edits": point.edits, **point.values} for point in points],
        "batches": batches,
    }
    return Scores(values, evidence, curve)


@dataclass(frozen=True)
class _Point:
    """One checkpoint of a stream: its number of edits, its metrics and their evidence."""

    edits: int
    values: dict[str, float]
    evidence: dict[str, str]


#: The efficacy-like metrics of a stream: (key under the final scheme, key under the immediate
#: scheme, the probes compared, how they are probed).
_EDIT_SCORES = (("es", "es_imm", "edit", "on the edit prompt"), ("gs", "gs_imm", "paraphrases", "over the paraphrases"))


def _checkpoint(case: StreamCase, schedule: Schedule, before: Mapping[str, float], state: Mapping[str, float],
                n: int, made: Sequence[Mapping[str, float]]) -> _Point:
    """The metrics of the checkpoint after ``n`` edits (``state``); ``made[i]`` is the state right
    after edit i's batch (immediate scheme; empty otherwise)."""
    values: dict[str, float] = {}
    evidence: dict[str, str] = {}
    where = f"θ_{n}"

    def share(key: str, preferred: Sequence[float], other: Sequence[float], line: str) -> None:
        values[key] = metrics.preference_share(preferred, other)
        evidence[key] = f"{sum(a > b for a, b in zip(preferred, other))} of {len(preferred)} {line}"

    for final_key, immediate_key, probes, how in _EDIT_SCORES:
        if schedule.immediate:
            share(immediate_key, [made[i][f"{probes}:{i}:new"] for i in range(n)], [made[i][f"{probes}:{i}:old"] for i in range(n)],
                  f"edits: p(o*) > p(o) {how} right after their batch")
        if schedule.final:
            share(final_key, [state[f"{probes}:{i}:new"] for i in range(n)], [state[f"{probes}:{i}:old"] for i in range(n)],
                  f"edits: p(o*) > p(o) {how} on {where}")
    if schedule.immediate and schedule.final:
        then = [made[i][f"edit:{i}:new"] > made[i][f"edit:{i}:old"] for i in range(n)]
        now = [state[f"edit:{i}:new"] > state[f"edit:{i}:old"] for i in range(n)]
        values["retention"] = metrics.retention(then, now)
        evidence["retention"] = (f"{sum(a and b for a, b in zip(then, now))} of the {sum(then)} edits that took right "
                                 f"after their batch still take on {where}")
    neighbours = [(i, j) for i in range(n) for j in range(len(case.neighbourhood[i]))]
    if neighbours:
        share("spec", [state[f"neighbour:{i}:{j}:true"] for i, j in neighbours],
              [state[f"neighbour:{i}:{j}:new"] for i, j in neighbours],
              f"neighbourhood facts prefer their true object to the edit's new one on {where}")
    facts = [f"locality:{j}" for j in range(len(case.locality))]
    p_before, p_after = [before[name] for name in facts], [state[name] for name in facts]
    values["loc"] = metrics.locality(p_before, p_after)
    evidence["loc"] = (f"{sum(a >= b / 2 for b, a in zip(p_before, p_after))} of {len(facts)} locality facts kept half "
                       f"their p_θ on {where}")
    values["ppl"] = metrics.perplexity_ratio(state[PERPLEXITY], before[PERPLEXITY])
    evidence["ppl"] = f"PPL_{where}={state[PERPLEXITY]:.4g}, PPL_θ={before[PERPLEXITY]:.4g}"
    norms = norms_of(state)
    values["norm"] = metrics.update_norm(norms.values())
    largest = max(norms, key=norms.__getitem__, default=None)
    evidence["norm"] = f"largest in {largest}: {norms[largest]:.4g}" if largest is not None else "no matrix edited"
    return _Point(n, values, evidence)


def _collapse_line(points: Sequence[_Point], collapse: int, total: int) -> str:
    """The checkpoint the collapse point names, or that none collapsed."""
    hit = next((point for point in points if point.edits == collapse
                and (point.values["ppl"] >= metrics.COLLAPSE_PERPLEXITY or point.values["loc"] < metrics.COLLAPSE_LOCALITY)), None)
    if hit is None:
        return f"no checkpoint of the {total} edits had PPL ratio >= {metrics.COLLAPSE_PERPLEXITY:g} or locality < {metrics.COLLAPSE_LOCALITY:g}"
    return f"after {hit.edits} edits: PPL ratio {hit.values['ppl']:.3g}, locality {hit.values['loc']:.3g}"


def _conflict(p: Probabilities, p_new: Mapping[str, float]) -> Scores:
    """CM of k_o from θm to θ', and a Conflict Score per entry of ``p_new`` (metric key ->
    p_θ'(k_n) of that mode) against p_θ'(k_o)."""
    mid_ko, after_ko = p["theta_m"]["k_o"], p["theta_prime"]["k_o"]
    values = {key: float(metrics.conflict_score(p_kn, after_ko)) for key, p_kn in p_new.items()}
    evidence = {key: _versus("p(k_n)", p_kn, "p(k_o)", after_ko) for key, p_kn in p_new.items()}
    values["cm"] = metrics.conflict_magnitude(mid_ko, after_ko)
    evidence["cm"] = f"p_θm(k_o)={mid_ko:.3g}, p_θ'(k_o)={after_ko:.3g}"
    return Scores(values, evidence)


def _versus(name_a: str, a: float, name_b: str, b: float) -> str:
    return f"{name_a}={a:.3g} {'>' if a > b else '<='} {name_b}={b:.3g}"


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in values) + "]"

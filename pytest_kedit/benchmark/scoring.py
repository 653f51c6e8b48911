"""A case's metrics and their evidence, as pure functions of the probabilities its plan
measured (:mod:`pytest_kedit.benchmark.plans`). No model here, so a whole split's scoring can be
checked with hypothesis on made-up probabilities.

``probabilities`` maps a model state (``theta``, ``theta_s``, ``theta_m``, ``theta_prime``) to
the probability of each fact probed there, under the names the plan gave them. The
evidence of a metric is the line a failure message shows: the probabilities that decided it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pytest_kedit.benchmark import metrics
from pytest_kedit.benchmark.cases import ConflictCase, RoundCase
from pytest_kedit.benchmark.plans import others
from pytest_kedit.benchmark.protocol import PAPER, Protocol

#: state -> fact name -> p
Probabilities = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class Scores:
    """Per metric key: its value, and the probabilities behind it."""

    values: dict[str, float]
    evidence: dict[str, str]


def coverage(case: ConflictCase, p: Probabilities, protocol: Protocol = PAPER) -> Scores:
    """Single Succ on θs; CS and CM with k_o = o2, k_n = o3."""
    single = p["theta_s"]
    scores = _conflict(p, {"cs": p["theta_prime"]["k_n"]})
    scores.values["single_succ"] = float(metrics.single_success(single["o3"], single["o2"]))
    scores.evidence["single_succ"] = _versus("p_θs(o3)", single["o3"], "p_θs(o2)", single["o2"])
    return scores


def reverse(case: ConflictCase, p: Probabilities, protocol: Protocol = PAPER) -> Scores:
    """CS_exp, CS_imp and CM."""
    after = p["theta_prime"]
    return _conflict(p, {"cs_exp": after["k_n_exp"], "cs_imp": after["k_n_imp"]})


def composite(case: ConflictCase, p: Probabilities, protocol: Protocol = PAPER) -> Scores:
    """CS_exp, CS_imp, CM, and TFD of the tied fact k_f from θ to θ'."""
    after = p["theta_prime"]
    scores = _conflict(p, {"cs_exp": after["k_n_exp"], "cs_imp": after["k_n_imp"]})
    before_kf, after_kf = p["theta"]["k_f"], after["k_f"]
    scores.values["tfd"] = metrics.tied_fact_damage(before_kf, after_kf)
    scores.evidence["tfd"] = f"p_θ(k_f)={before_kf:.3g}, p_θ'(k_f)={after_kf:.3g}"
    return scores


def round_trip(case: RoundCase, p: Probabilities, protocol: Protocol = PAPER) -> Scores:
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

"""The benchmark's metrics, as pure functions of probe probabilities.

Model states: θ the original model, θm after edit e1, θ' after e1 then e2, θs the original
with e2 alone. ``p`` is the probe of a fact (the geometric mean of the object's token
probabilities, averaged over the relation's prompts); this module never sees a model.

ConflictEdit (per case)::

    Single Succ = I[p_θs(k_n) > p_θs(k_o)]
    CS          = I[p_θ'(k_n) > p_θ'(k_o)]                     (CS_exp, CS_imp: two choices of k_n)
    CM          = max(-1, (p_θm(k_o) - p_θ'(k_o)) / p_θm(k_o))
    TFD         = (p_θ(k_f) - p_θ'(k_f)) / p_θ(k_f)

RoundEdit, e1 = (s, r, o1 -> o*), e2 = (s, r, o* -> o1), Others = Obj \\ {o1}::

    Succ = ½·I[p_θm(o*) > p_θm(o1)] + ½·I[p_θ'(o1) > p_θ'(o*)]
    IR   = |{o ∈ Others : p_θ(o) > p_θ'(o)}| / |Others|
    FR   = I[IR > 0.5]
    D    = JS(n(P_θ), n(P_θ'))            P = [p(o1)] + [p(o) for o in Others], n(x) = x / Σx
    JS(p, q) = ½·KL(p ‖ m) + ½·KL(q ‖ m),  m = (p + q) / 2, natural log, 0·log 0 = 0

The "upstream" distortion is D / |Obj|, the scale of the published Table 2.

Sequential editing, at a checkpoint θ_t after the first t edits of a stream (e_i = (s_i, r_i,
o_i -> o*_i), i < t), θ the original model::

    ES, GS      = |{i : p_t(o*_i) > p_t(o_i)}| / t     on the edit prompt (ES), over the paraphrases (GS)
    Retention   = |{i : e_i took right after its batch and still takes on θ_t}| / |{i : e_i took right after its batch}|
    Specificity = |{(s', i) : p_t(s', r_i, o_i) > p_t(s', r_i, o*_i)}| / |neighbourhood facts|
    Locality    = |{f : p_t(f) >= p_θ(f) / 2}| / |locality facts|
    PPL ratio   = PPL_t(held-out text) / PPL_θ(held-out text)
    Update norm = max over edited matrices W of ‖W_t − W_θ‖_F / ‖W_θ‖_F
    Collapse    = the first checkpoint t with PPL ratio >= 2 or Locality < 0.5; N when none

Tables report ``mean_percent``: the mean over cases, ×100.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
from scipy.special import rel_entr

DISTORTION_SCALINGS = ("paper", "upstream")

_LN2 = math.log(2)


def conflict_score(p_new: float, p_old: float) -> int:
    """Conflict Score of one case: 1 if the new fact is strictly more likely than the old, else 0.

    Both probabilities are measured on θ' (after e1 then e2). Ties score 0.
    """
    return int(p_new > p_old)


def single_success(p_new: float, p_old: float) -> int:
    """Single Succ of one case: 1 if e2's target beats the object it replaces, else 0.

    Both probabilities are measured on θs (the original model with e2 alone). Ties score 0.
    """
    return int(p_new > p_old)


def conflict_magnitude(p_mid: float, p_after: float) -> float:
    """Conflict Magnitude: the relative drop of the old fact k_o from θm to θ', clipped below at -1.

    ``p_mid`` is p_θm(k_o) (after e1), ``p_after`` is p_θ'(k_o) (after e1 then e2). The result
    is ``max(-1, (p_mid - p_after) / p_mid)``, so in [-1, 1] for probabilities: 1 when e2 erased
    k_o, 0 when it left k_o alone, -1 when it made k_o at least twice as likely.

    When ``p_mid == 0`` the ratio is undefined; the result is its clipped limit as ``p_mid``
    goes to 0: 0.0 if ``p_after == 0`` too, else -1.0.
    """
    if p_mid == 0:
        return 0.0 if p_after == 0 else -1.0
    return float(max((p_mid - p_after) / p_mid, -1.0))


def tied_fact_damage(p_before: float, p_after: float) -> float:
    """Tied Fact Damage: the relative drop of the tied fact k_f from θ to θ'. Not clipped.

    ``p_before`` is p_θ(k_f) (original model), ``p_after`` is p_θ'(k_f). The result is
    ``(p_before - p_after) / p_before``: at most 1, and negative (without bound) when the edits
    made k_f more likely.

    When ``p_before == 0`` the original model did not know k_f, so there is nothing to damage:
    the result is 0.0.
    """
    if p_before == 0:
        return 0.0
    return float((p_before - p_after) / p_before)


def round_success(p_mid_new: float, p_mid_old: float, p_after_old: float, p_after_new: float) -> float:
    """RoundEdit Succ: half a point for each of the two edits that took, so 0, 0.5 or 1.

    e1 took if p_θm(o*) > p_θm(o1) (``p_mid_new > p_mid_old``); e2 took if
    p_θ'(o1) > p_θ'(o*) (``p_after_old > p_after_new``). Ties score 0.
    """
    return 0.5 * int(p_mid_new > p_mid_old) + 0.5 * int(p_after_old > p_after_new)


def ignore_rate(before: Sequence[float], after: Sequence[float]) -> float:
    """Ignore Rate: the fraction of Others that lost probability in the round edit.

    ``before[i]`` and ``after[i]`` are p_θ(o) and p_θ'(o) of the i-th object of Others (the true
    objects except o1). The result is in [0, 1]. Raises ValueError if the sequences are empty
    or differ in length.
    """
    if len(before) != len(after):
        raise ValueError(f"before and after differ in length: {len(before)} != {len(after)}")
    if len(before) == 0:
        raise ValueError("ignore_rate needs at least one object besides o1")
    ignored = sum(int(b > a) for b, a in zip(before, after))
    return ignored / len(before)


def failure(ignore_rate: float) -> int:
    """Failure Rate of one case: 1 if more than half of Others were ignored (IR > 0.5), else 0."""
    return int(ignore_rate > 0.5)


def _distribution(values: Sequence[float], name: str) -> npt.NDArray[np.float64]:
    """``values`` divided by their sum, after checking they can be: 1-D, finite, >= 0, sum > 0."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence, got shape {v.shape}")
    if not np.isfinite(v).all() or (v < 0).any():
        raise ValueError(f"{name} must be finite and non-negative: {v.tolist()}")
    total = float(v.sum())
    if not 0 < total < math.inf:
        raise ValueError(f"{name} must have a positive, finite sum: {v.tolist()}")
    return v / total


def js_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen–Shannon divergence (natural log) of ``p`` and ``q``, each first normalised to sum 1.

    Normalising first makes the result invariant to positive scaling of either input. Terms
    with a zero probability contribute 0 (0·log 0 = 0). The result is symmetric, 0 for
    proportional inputs, ln 2 for disjoint supports, and clamped into [0, ln 2] to absorb
    rounding. Raises ValueError unless both are 1-D of the same length, finite, non-negative,
    with a positive sum.
    """
    p_dist, q_dist = _distribution(p, "p"), _distribution(q, "q")
    if p_dist.shape != q_dist.shape:
        raise ValueError(f"p and q differ in length: {p_dist.size} != {q_dist.size}")
    m = (p_dist + q_dist) / 2
    js = (rel_entr(p_dist, m).sum() + rel_entr(q_dist, m).sum()) / 2
    return float(min(max(js, 0.0), _LN2))


def distortion(before: Sequence[float], after: Sequence[float], scaling: str = "paper") -> float:
    """Distortion D of a round edit: how much the distribution over Obj moved from θ to θ'.

    ``before`` and ``after`` are P = [p(o1)] + [p(o) for o in Others] on θ and on θ'.
    ``scaling="paper"`` gives ``js_divergence(before, after)``, in [0, ln 2];
    ``scaling="upstream"`` divides it by ``len(before)`` (= |Obj|), as the published code did
    (``KLDivLoss(reduction="batchmean")`` on a 1-D vector divides by its length) and as the
    published Table 2 reports. Raises ValueError for an unknown scaling or invalid inputs.
    """
    if scaling not in DISTORTION_SCALINGS:
        raise ValueError(f"unknown distortion scaling {scaling!r}; expected one of {DISTORTION_SCALINGS}")
    js = js_divergence(before, after)
    return js / len(before) if scaling == "upstream" else js


def preference_share(preferred: Sequence[float], other: Sequence[float]) -> float:
    """The share of the pairs in which ``preferred[i] > other[i]`` (ties do not count), in [0, 1].

    A stream's efficacy is it of p(o*) against p(o) of the edits so far on their edit prompts,
    its generalisation the same over their paraphrases (each edit's probabilities averaged over
    them), its specificity of p(s', r, o) against p(s', r, o*) over their neighbourhood facts
    (other subjects s' whose object under r is also o). Raises ValueError if the sequences are
    empty or differ in length.
    """
    if len(preferred) != len(other):
        raise ValueError(f"preferred and other differ in length: {len(preferred)} != {len(other)}")
    if len(preferred) == 0:
        raise ValueError("preference_share needs at least one pair")
    return sum(int(a > b) for a, b in zip(preferred, other)) / len(preferred)


def retention(took_then: Sequence[bool], takes_now: Sequence[bool]) -> float:
    """Retention at a checkpoint: of the edits that took right after their batch
    (``took_then[i]``), the share that still take on the checkpoint's model (``takes_now[i]``).

    In [0, 1]; 0.0 when no edit took right after its batch (nothing was there to retain). Edits
    that only take later do not count. Raises ValueError if the sequences differ in length.
    """
    if len(took_then) != len(takes_now):
        raise ValueError(f"took_then and takes_now differ in length: {len(took_then)} != {len(takes_now)}")
    took = sum(bool(then) for then in took_then)
    kept = sum(bool(then) and bool(now) for then, now in zip(took_then, takes_now))
    return kept / took if took else 0.0


def locality(before: Sequence[float], after: Sequence[float]) -> float:
    """Locality at a checkpoint: the share of the locality facts whose probability kept at least
    half its value, ``after[j] >= before[j] / 2`` with ``before[j]`` = p_θ(f_j) and ``after[j]``
    = p_t(f_j). In [0, 1]; 1 when no probability fell. Raises ValueError if the sequences are
    empty or differ in length.
    """
    if len(before) != len(after):
        raise ValueError(f"before and after differ in length: {len(before)} != {len(after)}")
    if len(before) == 0:
        raise ValueError("locality needs at least one fact")
    return sum(int(a >= b / 2) for b, a in zip(before, after)) / len(before)


def perplexity_ratio(after: float, before: float) -> float:
    """The perplexity of the held-out text on the edited model over its perplexity on θ,
    ``after / before``: exactly 1.0 when they are equal, above 1 when the edits made the text
    less likely. Raises ValueError unless both are finite and positive.
    """
    for name, value in (("after", after), ("before", before)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"perplexity {name} must be finite and positive, got {value}")
    return after / before


def update_norm(relative_norms: Iterable[float]) -> float:
    """The update norm of a model state: the largest ‖W − W₀‖_F / ‖W₀‖_F over its edited
    matrices (``relative_norms``, one per matrix), 0.0 when no matrix was edited."""
    return float(max(relative_norms, default=0.0))


#: A stream has collapsed at a checkpoint whose perplexity ratio is at least this ...
COLLAPSE_PERPLEXITY = 2.0
#: ... or whose locality is below this.
COLLAPSE_LOCALITY = 0.5


def collapse_point(edits: Sequence[int], perplexity_ratios: Sequence[float], localities: Sequence[float],
                   total: int) -> int:
    """The collapse point of a stream of ``total`` edits: the number of edits ``edits[k]`` of the
    first checkpoint k whose perplexity ratio is at least :data:`COLLAPSE_PERPLEXITY` (the
    held-out text's perplexity at least doubled) or whose locality is below
    :data:`COLLAPSE_LOCALITY` (more than half the known facts lost half their probability);
    ``total`` when no checkpoint did. The checkpoints are in stream order; a collapse at a last
    checkpoint of ``total`` edits and none at all both give ``total``. Raises ValueError if the
    sequences differ in length.
    """
    if not len(edits) == len(perplexity_ratios) == len(localities):
        raise ValueError(f"edits, perplexity_ratios and localities differ in length: "
                         f"{len(edits)}, {len(perplexity_ratios)}, {len(localities)}")
    for count, ratio, kept in zip(edits, perplexity_ratios, localities):
        if ratio >= COLLAPSE_PERPLEXITY or kept < COLLAPSE_LOCALITY:
            return count
    return total


def mean_percent(values: Iterable[float]) -> float:
    """The tables' aggregate: the mean of ``values`` ×100, or NaN when there are none.

    The sum is exactly rounded (``math.fsum``), so the result does not depend on the order of
    the values: runs that collect the same cases in a different order (pytest-xdist) report
    bit-identical numbers. NaN if any value is NaN.
    """
    values = list(values)
    if not values:
        return math.nan
    return 100 * math.fsum(values) / len(values)


#: The defaults of :func:`bootstrap_interval`, which the reports use and name under their tables.
BOOTSTRAP_CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def bootstrap_interval(
    values: Iterable[float],
    confidence: float = BOOTSTRAP_CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a table cell, ``mean_percent(values)``.

    The n values are the cases, resampled with replacement: resample i takes the values at the
    indices of row i of ``numpy.random.default_rng(seed).integers(0, n, size=(resamples, n))``,
    and its statistic is ``100 * sum / n`` (numpy's sum). Of the sorted statistics, the
    ``t = round(resamples * (1 - confidence) / 2)`` smallest and the ``t`` largest are cut
    off (``t`` at most ``(resamples - 1) // 2``, so at least one is left); the interval is the
    smallest and the largest of the rest.

    Always: the result is a pure function of the values *in their order*, ``confidence``,
    ``resamples`` and ``seed``; ``low <= high``; both are statistics of resamples, so they lie
    between the statistics of n copies of ``min(values)`` and of n copies of ``max(values)``;
    constant values give ``low == high``; with the same seed and resamples, a higher confidence
    gives an interval that contains the lower one's. For values whose sums are exact (0/1
    indicators, halves) the statistic equals ``mean_percent`` of the resample; otherwise it
    agrees to rounding. The interval need not contain ``mean_percent(values)``: its ends are
    random. For 0/1 values at least half of the bootstrap distribution lies on each side of
    the mean (a binomial's median equals its mean when that is an integer), so missing it
    would take fewer than ``t`` of the resamples on one side.

    (NaN, NaN) for no values. Raises ValueError unless 0 < confidence < 1 and resamples >= 1.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    x = np.asarray(list(values), dtype=float)
    if x.size == 0:
        return math.nan, math.nan
    indices = np.random.default_rng(seed).integers(0, x.size, size=(resamples, x.size))
    statistics = np.sort(100 * x[indices].sum(axis=1) / x.size)
    cut = min(round(resamples * (1 - confidence) / 2), (resamples - 1) // 2)
    return float(statistics[cut]), float(statistics[resamples - 1 - cut])

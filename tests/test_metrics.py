"""Properties and hand-computed examples of pytest_kedit.benchmark.metrics, and checks of pytest_kedit.strategies."""

from __future__ import annotations

import ast
import bisect
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.special import entr

import pytest_kedit.benchmark.metrics
from pytest_kedit.benchmark.cases import ConflictCase, RoundCase, parse_conflict_case, parse_round_case
from pytest_kedit.benchmark.metrics import (
    COLLAPSE_LOCALITY,
    COLLAPSE_PERPLEXITY,
    DISTORTION_SCALINGS,
    bootstrap_interval,
    collapse_point,
    conflict_magnitude,
    conflict_score,
    distortion,
    failure,
    ignore_rate,
    js_divergence,
    locality,
    mean_percent,
    perplexity_ratio,
    preference_share,
    retention,
    round_success,
    single_success,
    tied_fact_damage,
    update_norm,
)
from pytest_kedit.strategies import (
    conflict_cases,
    paired_probability_vectors,
    probabilities,
    probability_vectors,
    round_cases,
)

LN2 = math.log(2)
# Per-case metric values, as the tables aggregate them (CM and TFD can be negative).
metric_values = st.floats(-1.0, 1.0, allow_subnormal=False)
# Probabilities far enough above the smallest normal float that scaling by 2**-k (k <= 64) is exact.
scalable_probabilities = st.floats(2.0**-900, 1.0)
powers_of_two = st.integers(-64, 0).map(lambda k: 2.0**k)


def strictly_positive_vectors(min_size: int = 2, max_size: int = 10) -> st.SearchStrategy[list[float]]:
    """Probability vectors without zeros, as probes of a real model give."""
    return st.lists(probabilities(), min_size=min_size, max_size=max_size)


def permuted_pairs(min_size: int = 1) -> st.SearchStrategy[tuple[list[float], list[float], list[int]]]:
    """``(before, after, order)``: a pair of probability vectors and a permutation of their indices."""
    return paired_probability_vectors(min_size=min_size).flatmap(
        lambda pair: st.tuples(st.just(pair[0]), st.just(pair[1]), st.permutations(range(len(pair[0]))))
    )


# --- ConflictEdit metrics -------------------------------------------------------------------


@given(probabilities(allow_zero=True), probabilities(allow_zero=True))
@example(0.3, 0.3)
def test_conflict_score_and_single_success_give_the_point_to_the_strictly_larger_probability(a, b):
    for indicator in (conflict_score, single_success):
        assert indicator(a, b) in (0, 1)
        assert indicator(a, b) + indicator(b, a) == (0 if a == b else 1)  # one winner, none on a tie
        assert indicator(max(a, b), min(a, b)) == (a != b)  # and the winner is the larger one


@given(probabilities(allow_zero=True), probabilities(allow_zero=True))
def test_conflict_magnitude_is_in_minus_one_to_one(p_mid, p_after):
    assert -1.0 <= conflict_magnitude(p_mid, p_after) <= 1.0


@given(probabilities())
def test_conflict_magnitude_is_zero_when_e2_leaves_the_old_fact_alone_and_one_when_it_erases_it(p_mid):
    assert conflict_magnitude(p_mid, p_mid) == 0.0
    assert conflict_magnitude(p_mid, 0.0) == 1.0


@given(probabilities(), probabilities(allow_zero=True))
@example(p_mid=0.5, p_after=1.0)  # exactly doubled: raw ratio -1
@example(p_mid=0.3, p_after=math.nextafter(0.6, 0))  # just below double: raw ratio just above -1
@example(p_mid=0.2, p_after=0.9)  # raw ratio -3.5
def test_conflict_magnitude_is_minus_one_exactly_when_the_old_fact_at_least_doubled(p_mid, p_after):
    assert (conflict_magnitude(p_mid, p_after) == -1.0) == (p_after >= 2 * p_mid)


@given(probabilities(allow_zero=True), probabilities(allow_zero=True), probabilities(allow_zero=True))
@example(p_mid=0.0, a=0.0, b=0.3)
def test_conflict_magnitude_does_not_increase_when_the_old_fact_gets_likelier(p_mid, a, b):
    low, high = sorted((a, b))
    assert conflict_magnitude(p_mid, low) >= conflict_magnitude(p_mid, high)


@given(probabilities(), probabilities(), probabilities(allow_zero=True))
def test_conflict_magnitude_does_not_decrease_when_the_old_fact_was_likelier_after_e1(a, b, p_after):
    # 1 - p_after / p_mid grows with p_mid; the two roundings of the quotient may cost an ulp.
    low, high = sorted((a, b))
    assert conflict_magnitude(low, p_after) <= conflict_magnitude(high, p_after) + 1e-15


@given(scalable_probabilities, scalable_probabilities, powers_of_two)
def test_conflict_magnitude_depends_only_on_the_ratio_of_the_probabilities(p_mid, p_after, scale):
    assert conflict_magnitude(scale * p_mid, scale * p_after) == conflict_magnitude(p_mid, p_after)


@given(probabilities(), probabilities(allow_zero=True))
def test_conflict_magnitude_is_tied_fact_damage_clipped_below_at_minus_one(p_mid, p_after):
    # Both are the relative drop of a fact's probability; only CM is clipped.
    assert conflict_magnitude(p_mid, p_after) == max(-1.0, tied_fact_damage(p_mid, p_after))


def test_conflict_magnitude_examples():
    assert conflict_magnitude(0.8, 0.2) == pytest.approx(0.75)
    assert conflict_magnitude(0.4, 0.4) == 0.0
    assert conflict_magnitude(0.4, 0.0) == 1.0
    assert conflict_magnitude(0.1, 0.5) == -1.0  # raw (0.1 - 0.5) / 0.1 = -4
    assert conflict_magnitude(0.0, 0.0) == 0.0
    assert conflict_magnitude(0.0, 0.3) == -1.0


@given(probabilities(), probabilities(allow_zero=True))
def test_tied_fact_damage_is_positive_exactly_when_the_tied_fact_lost_probability(p_before, p_after):
    damage = tied_fact_damage(p_before, p_after)
    assert (damage > 0) == (p_after < p_before)
    assert (damage == 0) == (p_after == p_before)
    assert damage <= 1.0
    assert tied_fact_damage(p_before, 0.0) == 1.0  # a forgotten tied fact is the full damage


@st.composite
def more_than_doubled(draw: st.DrawFn) -> tuple[float, float]:
    """``(p_before, p_after)``: two probabilities with ``p_after > 2 * p_before``."""
    p_before = draw(st.floats(sys.float_info.min, 0.5, exclude_max=True, allow_subnormal=False))
    return p_before, draw(st.floats(2 * p_before, 1.0, exclude_min=True))


@given(more_than_doubled())
@example((0.1, 0.5))
@example((0.3, math.nextafter(0.6, 1)))
def test_tied_fact_damage_is_not_clipped_when_the_tied_fact_more_than_doubled(pair):
    p_before, p_after = pair
    assert tied_fact_damage(p_before, p_after) < -1.0
    assert conflict_magnitude(p_before, p_after) == -1.0  # where CM is clipped


@given(probabilities(), probabilities(allow_zero=True), probabilities(allow_zero=True))
def test_tied_fact_damage_does_not_increase_when_the_tied_fact_gets_likelier(p_before, a, b):
    low, high = sorted((a, b))
    assert tied_fact_damage(p_before, low) >= tied_fact_damage(p_before, high)


@given(scalable_probabilities, scalable_probabilities, powers_of_two)
def test_tied_fact_damage_depends_only_on_the_ratio_of_the_probabilities(p_before, p_after, scale):
    assert tied_fact_damage(scale * p_before, scale * p_after) == tied_fact_damage(p_before, p_after)


@given(probabilities(), probabilities(allow_zero=True))
def test_tied_fact_damage_is_the_share_of_the_tied_fact_lost(p_before, p_after):
    # p_after is what is left of p_before once the share TFD of it is gone.
    remaining = p_before * (1 - tied_fact_damage(p_before, p_after))
    assert remaining == pytest.approx(p_after, rel=1e-12, abs=p_before * 1e-15)


def test_tied_fact_damage_examples():
    assert tied_fact_damage(0.5, 0.125) == 0.75
    assert tied_fact_damage(0.1, 0.5) == pytest.approx(-4.0)  # not clipped, unlike CM
    assert tied_fact_damage(0.0, 0.0) == 0.0
    assert tied_fact_damage(0.0, 0.7) == 0.0


# --- RoundEdit metrics ----------------------------------------------------------------------


@given(*(probabilities(allow_zero=True) for _ in range(4)))
def test_round_success_scores_each_edit_of_the_round_like_a_conflict_score(p_mid_new, p_mid_old, p_after_old, p_after_new):
    succ = round_success(p_mid_new, p_mid_old, p_after_old, p_after_new)
    e1_took, e2_took = conflict_score(p_mid_new, p_mid_old), conflict_score(p_after_old, p_after_new)
    assert succ in (0.0, 0.5, 1.0)
    assert succ == (e1_took + e2_took) / 2


@given(*(probabilities(allow_zero=True) for _ in range(4)))
def test_round_success_weighs_the_two_edits_equally(p_mid_new, p_mid_old, p_after_old, p_after_new):
    assert round_success(p_mid_new, p_mid_old, p_after_old, p_after_new) == round_success(
        p_after_old, p_after_new, p_mid_new, p_mid_old
    )


@given(*(probabilities(allow_zero=True) for _ in range(4)))
def test_round_success_of_the_opposite_outcome_is_the_complement(p_mid_new, p_mid_old, p_after_old, p_after_new):
    succ = round_success(p_mid_new, p_mid_old, p_after_old, p_after_new)
    opposite = round_success(p_mid_old, p_mid_new, p_after_new, p_after_old)
    if p_mid_new != p_mid_old and p_after_old != p_after_new:
        assert succ + opposite == 1.0
    else:
        assert succ + opposite <= 0.5  # a tie scores for neither side


def test_round_success_examples():
    assert round_success(0.6, 0.3, 0.7, 0.2) == 1.0
    assert round_success(0.6, 0.3, 0.2, 0.7) == 0.5  # e2 did not restore o1
    assert round_success(0.3, 0.6, 0.7, 0.2) == 0.5  # e1 did not take
    assert round_success(0.3, 0.3, 0.2, 0.2) == 0.0  # ties score nothing


@given(paired_probability_vectors(min_size=1))
def test_ignore_rate_is_a_fraction_of_the_others(pair):
    before, after = pair
    rate = ignore_rate(before, after)
    assert 0.0 <= rate <= 1.0
    assert rate * len(before) == pytest.approx(round(rate * len(before)), abs=1e-9)  # a multiple of 1/|Others|
    assert ignore_rate(before, before) == 0.0


@given(probabilities(allow_zero=True), probabilities(allow_zero=True))
@example(0.3, 0.3)
def test_ignore_rate_of_a_single_other_says_whether_it_lost_probability(before, after):
    # With the size-weighted mean of a union below, this fixes IR for any number of Others.
    assert ignore_rate([before], [after]) == (1.0 if after < before else 0.0)


@given(permuted_pairs())
def test_ignore_rate_does_not_depend_on_the_order_of_the_others(pair_and_order):
    before, after, order = pair_and_order
    permuted = [before[i] for i in order], [after[i] for i in order]
    assert ignore_rate(*permuted) == ignore_rate(before, after)


@given(paired_probability_vectors(min_size=1))
def test_ignore_rate_of_the_reversed_round_counts_the_other_untied_objects(pair):
    before, after = pair
    ties = sum(b == a for b, a in zip(before, after))
    assert ignore_rate(before, after) + ignore_rate(after, before) == pytest.approx(1 - ties / len(before))


@given(paired_probability_vectors(min_size=1).flatmap(
    lambda pair: st.tuples(st.just(pair), st.lists(st.floats(0, 1), min_size=len(pair[0]), max_size=len(pair[0])))
))
def test_ignore_rate_does_not_decrease_when_others_lose_more_probability(pair_and_factors):
    (before, after), factors = pair_and_factors
    lower = [a * f for a, f in zip(after, factors)]
    assert ignore_rate(before, lower) >= ignore_rate(before, after)


@given(paired_probability_vectors(min_size=1, max_size=5), paired_probability_vectors(min_size=1, max_size=5))
def test_ignore_rate_of_a_union_of_others_is_the_size_weighted_mean(first, second):
    n1, n2 = len(first[0]), len(second[0])
    union = ignore_rate(first[0] + second[0], first[1] + second[1])
    assert union * (n1 + n2) == pytest.approx(ignore_rate(*first) * n1 + ignore_rate(*second) * n2)


@given(st.floats(0, 1), st.floats(0, 1))
def test_failure_is_a_nondecreasing_indicator_of_the_ignore_rate(a, b):
    low, high = sorted((a, b))
    assert failure(low) in (0, 1) and failure(high) in (0, 1)
    assert failure(low) <= failure(high)


@given(paired_probability_vectors(min_size=1))
def test_a_round_edit_and_its_reverse_do_not_both_fail(pair):
    """FR needs a strict majority of Others ignored, which a round edit and its reverse cannot both have."""
    before, after = pair
    both = failure(ignore_rate(before, after)) + failure(ignore_rate(after, before))
    assert both <= 1
    if len(before) % 2 == 1 and all(b != a for b, a in zip(before, after)):
        assert both == 1  # no ties and an odd count: one side has the majority


def test_ignore_rate_and_failure_examples():
    before, after = [0.3, 0.2, 0.1], [0.1, 0.2, 0.05]  # the tie (0.2, 0.2) is not ignored
    assert ignore_rate(before, after) == pytest.approx(2 / 3)
    assert failure(ignore_rate(before, after)) == 1
    assert ignore_rate([0.3, 0.2], [0.1, 0.4]) == 0.5
    assert failure(0.0) == 0
    assert failure(0.5) == 0  # half is not a majority
    assert failure(math.nextafter(0.5, 1)) == 1
    assert failure(1.0) == 1


@pytest.mark.parametrize("before, after", [([], []), ([0.1, 0.2], [0.1])])
def test_ignore_rate_rejects_empty_or_mismatched_inputs(before, after):
    with pytest.raises(ValueError):
        ignore_rate(before, after)


# --- Jensen-Shannon divergence and distortion -----------------------------------------------


def normalised(x) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x / x.sum()


def entropy(x: np.ndarray) -> float:
    """Shannon entropy in nats, 0·log 0 = 0."""
    return float(entr(x).sum())


@given(paired_probability_vectors())
def test_js_divergence_is_between_zero_and_ln2(pair):
    assert 0.0 <= js_divergence(*pair) <= LN2


@given(paired_probability_vectors())
def test_js_divergence_is_symmetric(pair):
    p, q = pair
    assert js_divergence(p, q) == js_divergence(q, p)


@given(probability_vectors())
def test_js_divergence_of_a_vector_with_itself_is_zero(p):
    assert js_divergence(p, p) == 0.0


@given(
    paired_probability_vectors(),
    st.floats(1.0, 1e6, allow_subnormal=False),  # >= 1, so that no entry underflows
    st.floats(1.0, 1e6, allow_subnormal=False),
)
@example(pair=([1.0, 3.0], [2.0, 2.0]), a=7.0, b=1e6)
def test_js_divergence_is_invariant_to_positive_scaling(pair, a, b):
    p, q = pair
    scaled = js_divergence([a * x for x in p], [b * x for x in q])
    assert scaled == pytest.approx(js_divergence(p, q), abs=1e-12)


@given(permuted_pairs(min_size=2))
def test_js_divergence_does_not_depend_on_the_order_of_the_objects(pair_and_order):
    p, q, order = pair_and_order
    permuted = js_divergence([p[i] for i in order], [q[i] for i in order])
    assert permuted == pytest.approx(js_divergence(p, q), abs=1e-12)


@given(paired_probability_vectors(), st.integers(1, 3))
def test_js_divergence_ignores_objects_that_neither_side_gives_probability(pair, zeros):
    p, q = pair
    assert js_divergence(p + [0.0] * zeros, q + [0.0] * zeros) == pytest.approx(js_divergence(p, q), abs=1e-12)


@given(probability_vectors(min_size=1, max_size=5), probability_vectors(min_size=1, max_size=5))
def test_js_divergence_of_disjoint_supports_is_ln2(p, q):
    assert js_divergence(p + [0.0] * len(q), [0.0] * len(p) + q) == pytest.approx(LN2, abs=1e-12)


@given(paired_probability_vectors())
@example(pair=([1.0, 0.0], [0.0, 1.0]))
def test_js_divergence_is_the_squared_scipy_jensen_shannon_distance(pair):
    p, q = pair
    with np.errstate(invalid="ignore"):  # scipy takes the square root of a sum that rounded below 0
        distance = np.nan_to_num(jensenshannon(p, q))
    assert js_divergence(p, q) == pytest.approx(distance**2, abs=1e-12)


@given(paired_probability_vectors())
def test_js_divergence_is_the_entropy_of_the_mixture_minus_the_mean_entropy(pair):
    p, q = map(normalised, pair)
    assert js_divergence(*pair) == pytest.approx(entropy((p + q) / 2) - (entropy(p) + entropy(q)) / 2, abs=1e-12)


@given(paired_probability_vectors())
def test_js_divergence_is_bounded_by_the_total_variation_distance(pair):
    """TV²/2 <= JS <= ln 2 · TV, TV = ½·Σ|p - q| (Pinsker's inequality for the lower bound)."""
    p, q = map(normalised, pair)
    tv = np.abs(p - q).sum() / 2
    js = js_divergence(*pair)
    assert tv**2 / 2 - 1e-12 <= js <= LN2 * tv + 1e-12


def test_js_divergence_examples():
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(LN2)
    assert js_divergence([2, 0, 0], [0, 5, 5]) == pytest.approx(LN2)
    # [1, 1] -> [1/2, 1/2], [1, 3] -> [1/4, 3/4], m = [3/8, 5/8]
    kl_p = 0.5 * math.log(0.5 / 0.375) + 0.5 * math.log(0.5 / 0.625)
    kl_q = 0.25 * math.log(0.25 / 0.375) + 0.75 * math.log(0.75 / 0.625)
    assert js_divergence([1, 1], [1, 3]) == pytest.approx((kl_p + kl_q) / 2)
    assert js_divergence([1, 1], [1, 3]) == pytest.approx(0.0338221, abs=1e-7)


@pytest.mark.parametrize(
    "p, q",
    [
        ([0.5, 0.5], [1.0]),  # lengths differ
        ([0.5, -0.1], [0.5, 0.5]),  # negative
        ([0.0, 0.0], [0.5, 0.5]),  # zero sum
        ([0.5, math.nan], [0.5, 0.5]),
        ([0.5, math.inf], [0.5, 0.5]),
        ([[0.5, 0.5]], [[0.5, 0.5]]),  # not 1-D
    ],
)
def test_js_divergence_rejects_invalid_inputs(p, q):
    with pytest.raises(ValueError):
        js_divergence(p, q)


def upstream_js_div(before: list[float], after: list[float]) -> float:
    """D as the published code computed it: KLDivLoss(reduction="batchmean") against the mixture's log."""
    import torch

    p, q = (torch.tensor(normalised(x), dtype=torch.float64) for x in (before, after))
    kl_div = torch.nn.KLDivLoss(reduction="batchmean")  # on a 1-D input, "batch" is the object axis
    log_mean = ((p + q) / 2).log()
    return float((kl_div(log_mean, p) + kl_div(log_mean, q)) / 2)


@given(strictly_positive_vectors(min_size=2).flatmap(
    lambda v: st.tuples(st.just(v), strictly_positive_vectors(len(v), len(v)))
))
@example(([0.4, 0.2, 0.2], [0.8, 0.1, 0.1]))
def test_upstream_distortion_is_what_the_published_code_computed(pair):
    assert distortion(*pair, scaling="upstream") == pytest.approx(upstream_js_div(*pair), abs=1e-12)


@given(paired_probability_vectors())
def test_the_default_distortion_is_the_paper_s_and_at_least_twice_the_upstream_one(pair):
    paper = distortion(*pair)
    assert paper == distortion(*pair, scaling="paper")
    assert 0.0 <= 2 * distortion(*pair, scaling="upstream") <= paper <= LN2  # |Obj| >= 2


@given(permuted_pairs(min_size=3), st.sampled_from(DISTORTION_SCALINGS))
def test_distortion_does_not_depend_on_the_order_of_the_others(pair_and_order, scaling):
    before, after, order = pair_and_order
    others = [i for i in order if i != 0]  # o1 stays first
    permuted = [before[0]] + [before[i] for i in others], [after[0]] + [after[i] for i in others]
    assert distortion(*permuted, scaling=scaling) == pytest.approx(distortion(before, after, scaling=scaling), abs=1e-12)


def test_distortion_example():
    # o1 and two Others: P_θ = [0.4, 0.2, 0.2] -> [1/2, 1/4, 1/4]; P_θ' = [0.8, 0.1, 0.1] -> itself.
    before, after = [0.4, 0.2, 0.2], [0.8, 0.1, 0.1]
    m = [0.65, 0.175, 0.175]
    kl_before = 0.5 * math.log(0.5 / m[0]) + 2 * 0.25 * math.log(0.25 / m[1])
    kl_after = 0.8 * math.log(0.8 / m[0]) + 2 * 0.1 * math.log(0.1 / m[1])
    expected = (kl_before + kl_after) / 2
    assert distortion(before, after) == pytest.approx(expected)
    assert distortion(before, after) == pytest.approx(0.0507, abs=1e-4)
    assert distortion(before, after, scaling="upstream") == pytest.approx(expected / 3)


def test_distortion_rejects_an_unknown_scaling():
    assert DISTORTION_SCALINGS == ("paper", "upstream")
    with pytest.raises(ValueError, match="batchmean"):
        distortion([0.5, 0.5], [0.5, 0.5], scaling="batchmean")


# --- aggregates -----------------------------------------------------------------------------


@given(metric_values)
def test_mean_percent_of_one_value_is_that_value_as_a_percentage(value):
    assert mean_percent([value]) == 100 * value


@given(st.lists(metric_values, min_size=1, max_size=200), st.integers(0, 16).map(lambda k: 2.0**k))
def test_mean_percent_scales_with_the_values(values, scale):
    assert mean_percent([scale * v for v in values]) == scale * mean_percent(values)  # exact: a power of two


@given(st.lists(metric_values, min_size=1, max_size=200), metric_values)
def test_mean_percent_shifts_with_the_values(values, shift):
    shifted = mean_percent([v + shift for v in values])
    assert shifted == pytest.approx(mean_percent(values) + 100 * shift, rel=1e-12, abs=1e-12)


@given(
    st.lists(metric_values, min_size=1, max_size=200).flatmap(lambda v: st.tuples(st.just(v), st.permutations(v)))
)
@example(([1.0, 1e-16, -1.0], [1.0, -1.0, 1e-16]))  # a plain left-to-right sum differs here
def test_mean_percent_does_not_depend_on_the_order_of_the_values(values_and_permutation):
    values, permuted = values_and_permutation
    assert mean_percent(permuted) == mean_percent(values)  # exactly rounded sum: bit-identical


@given(st.lists(metric_values, min_size=1, max_size=200), st.integers(2, 5))
def test_mean_percent_does_not_change_when_every_case_is_counted_k_times(values, k):
    assert mean_percent(values * k) == pytest.approx(mean_percent(values), rel=1e-12, abs=1e-12)
    assert mean_percent(values * 2) == mean_percent(values)  # doubling the exact sum is exact


@given(st.lists(metric_values, min_size=1, max_size=200))
def test_mean_percent_lies_between_the_extremes_times_one_hundred(values):
    slack = 1e-12
    assert 100 * min(values) - slack <= mean_percent(values) <= 100 * max(values) + slack


@given(st.integers(0, 300), st.integers(0, 300))
def test_mean_percent_of_indicators_is_the_percentage_of_ones(ones, zeros):
    if ones + zeros:
        assert mean_percent([1] * ones + [0] * zeros) == 100 * ones / (ones + zeros)


def test_mean_percent_examples():
    assert mean_percent([1, 0, 1, 1]) == 75.0
    assert mean_percent(iter([0.5])) == 50.0
    assert mean_percent([-1.0, 0.5]) == -25.0
    assert math.isnan(mean_percent([]))


confidences = st.floats(0.01, 0.99)
seeds = st.integers(0, 2**32 - 1)
#: A few cases whose values are eighths: every sum of them is exact, so a resample's statistic
#: does not depend on how it is summed, and all n**n resamples can be listed.
few_eighths = st.lists(st.integers(-8, 8).map(lambda k: k / 8), min_size=1, max_size=5)


def exact_bootstrap_distribution(values: list[float]) -> list[float]:
    """The statistic, 100 × mean, of each of the n**n equally likely resamples of ``values``
    (with replacement, order kept), sorted: the distribution the bootstrap draws from."""
    n = len(values)
    return sorted(100 * math.fsum(resample) / n for resample in itertools.product(values, repeat=n))


@given(few_eighths, confidences, st.integers(1, 300), seeds)
@example([0.25, 0.75], 0.01, 2, 0)  # two resamples, both kept
def test_bootstrap_interval_ends_are_statistics_of_resamples(values, confidence, resamples, seed):
    possible = set(exact_bootstrap_distribution(values))
    low, high = bootstrap_interval(values, confidence, resamples, seed)
    assert low in possible and high in possible


@given(few_eighths, confidences, seeds)
@example([0.0, 1.0], 0.95, 0)
def test_bootstrap_interval_ends_are_the_quantiles_of_the_exact_bootstrap_distribution(values, confidence, seed):
    """With R resamples, each end is the (1 ∓ confidence)/2 quantile of the exact distribution up
    to sampling error: by the Dvoretzky-Kiefer-Wolfowitz inequality the empirical distribution
    of R draws is further than ε from the exact one with probability at most 2·exp(-2Rε²), below
    1e-15 here; 1/R more allows for rounding the count of resamples cut off."""
    resamples, epsilon = 20_000, 0.03
    exact = exact_bootstrap_distribution(values)

    def share(below: float | None = None, up_to: float | None = None) -> float:
        """The exact probability of a statistic < ``below``, or <= ``up_to``."""
        count = bisect.bisect_left(exact, below) if below is not None else bisect.bisect_right(exact, up_to)
        return count / len(exact)

    tail = (1 - confidence) / 2
    low, high = bootstrap_interval(values, confidence, resamples, seed)
    slack = epsilon + 1 / resamples
    assert share(below=low) <= tail + slack and share(up_to=low) >= tail - slack
    assert 1 - share(up_to=high) <= tail + slack and 1 - share(below=high) >= tail - slack


@given(few_eighths, st.integers(0, 150).map(lambda k: 2 * k + 1), seeds)
def test_bootstrap_interval_at_the_lowest_confidence_is_the_median_resample(values, odd_resamples, seed):
    low, high = bootstrap_interval(values, confidence=1e-9, resamples=odd_resamples, seed=seed)
    assert low == high


@given(few_eighths, confidences, seeds)
def test_bootstrap_interval_of_one_resample_is_a_point(values, confidence, seed):
    low, high = bootstrap_interval(values, confidence, resamples=1, seed=seed)
    assert low == high


@given(st.lists(metric_values, min_size=1, max_size=60), confidences, confidences, seeds)
def test_bootstrap_interval_is_ordered_bounded_and_nested_in_confidence(values, c1, c2, seed):
    low, high = bootstrap_interval(values, min(c1, c2), resamples=200, seed=seed)
    wide_low, wide_high = bootstrap_interval(values, max(c1, c2), resamples=200, seed=seed)
    slack = 1e-9  # the statistic of n copies of the smallest value is 100 times it up to rounding
    assert 100 * min(values) - slack <= wide_low <= low <= high <= wide_high <= 100 * max(values) + slack


@given(metric_values, st.integers(1, 60), st.integers(0, 2**32 - 1))
def test_bootstrap_interval_of_constant_data_is_degenerate(value, n, seed):
    low, high = bootstrap_interval([value] * n, seed=seed)
    assert low == high == pytest.approx(mean_percent([value] * n), rel=1e-12, abs=1e-12)


@given(st.tuples(st.integers(1, 40), st.integers(1, 40)).flatmap(lambda ones_zeros: st.permutations(
    [1.0] * ones_zeros[0] + [0.0] * ones_zeros[1])), seeds)
def test_bootstrap_interval_of_indicators_contains_the_mean(values, seed):
    # Each side of the mean holds at least half of the bootstrap distribution (the median of a
    # binomial equals its mean when that is an integer): missing it would take fewer than 25 of
    # 1000 resamples on one side, a chance below 1e-200.
    low, high = bootstrap_interval(values, seed=seed)
    assert low <= mean_percent(values) <= high
    assert low < high


@given(st.lists(metric_values, min_size=1, max_size=60), st.integers(0, 2**32 - 1))
def test_bootstrap_interval_is_deterministic(values, seed):
    assert bootstrap_interval(values, seed=seed) == bootstrap_interval(list(values), seed=seed)


def test_bootstrap_interval_examples():
    assert bootstrap_interval([1, 1, 1]) == (100.0, 100.0)
    low, high = bootstrap_interval([0, 1] * 50)
    assert 35 < low < 50 < high < 65  # about 50 ± 1.96·5
    assert bootstrap_interval([0.25]) == (25.0, 25.0)
    spread = [i / 10 for i in range(10)]
    assert bootstrap_interval(spread, seed=1) != bootstrap_interval(spread)  # another seed, other resamples
    assert all(math.isnan(x) for x in bootstrap_interval([]))


@pytest.mark.parametrize("kwargs", [{"confidence": 1.0}, {"confidence": 0.0}, {"resamples": 0}])
def test_bootstrap_interval_rejects_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        bootstrap_interval([0.5, 1.0], **kwargs)


def test_metrics_module_imports_only_numpy_scipy_and_the_standard_library():
    tree = ast.parse(Path(pytest_kedit.benchmark.metrics.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert {name.split(".")[0] for name in imported} <= {"__future__", "collections", "math", "numpy", "scipy"}


# --- sequential editing -----------------------------------------------------------------------

indicator_pairs = st.integers(1, 30).flatmap(lambda n: st.tuples(st.lists(st.booleans(), min_size=n, max_size=n),
                                                                  st.lists(st.booleans(), min_size=n, max_size=n)))
perplexities = st.floats(1.0, 1e6)


@given(paired_probability_vectors(min_size=1))
def test_preference_share_counts_strict_wins_and_a_swap_gives_the_complement_without_ties(pair):
    a, b = pair
    share = preference_share(a, b)
    assert 0 <= share <= 1 and share * len(a) == pytest.approx(round(share * len(a)))
    ties = sum(x == y for x, y in zip(a, b))
    assert share + preference_share(b, a) == pytest.approx(1 - ties / len(a))


@given(paired_probability_vectors(min_size=1), st.data())
def test_preference_share_does_not_decrease_when_a_preferred_probability_rises(pair, data):
    a, b = pair
    i = data.draw(st.integers(0, len(a) - 1))
    raised = [*a[:i], data.draw(st.floats(a[i], 1.0)), *a[i + 1:]]
    assert preference_share(raised, b) >= preference_share(a, b)


@given(probability_vectors(min_size=1))
def test_an_unchanged_model_scores_no_edit_and_loses_no_fact(p):
    """Efficacy of edits the model did not take (p(o*) <= p(o)): 0; locality of unchanged facts: 1."""
    assert preference_share([x / 2 for x in p], p) == 0
    assert preference_share(p, p) == 0
    assert locality(p, p) == 1.0


@given(indicator_pairs)
def test_retention_is_the_share_of_the_taken_edits_still_taken(pair):
    then, now = pair
    value = retention(then, now)
    assert 0 <= value <= 1
    assert retention(then, [True] * len(then)) == (1.0 if any(then) else 0.0)
    assert retention(then, [False] * len(then)) == 0.0
    assert retention([False] * len(then), now) == 0.0
    if any(then):  # an edit that only takes later does not count: flipping it changes nothing
        later = [n or not t for t, n in zip(then, now)]
        assert retention(then, later) == value


@given(indicator_pairs, st.data())
def test_retention_does_not_decrease_when_one_more_edit_still_takes(pair, data):
    then, now = pair
    i = data.draw(st.integers(0, len(then) - 1))
    assert retention(then, [*now[:i], True, *now[i + 1:]]) >= retention(then, now)


@given(paired_probability_vectors(min_size=1))
def test_locality_counts_the_facts_that_kept_half_their_probability(pair):
    before, after = pair
    assert locality(before, after) == sum(2 * a >= b for b, a in zip(before, after)) / len(before)
    assert locality(before, [max(a, b) for a, b in zip(after, before)]) == 1.0


@given(paired_probability_vectors(min_size=1), st.data())
def test_locality_does_not_decrease_when_a_fact_gets_likelier(pair, data):
    before, after = pair
    i = data.draw(st.integers(0, len(after) - 1))
    assert locality(before, [*after[:i], data.draw(st.floats(after[i], 1.0)), *after[i + 1:]]) >= locality(before, after)


@given(perplexities, perplexities, perplexities)
def test_perplexity_ratio_is_one_exactly_when_unchanged_and_chains(a, b, c):
    assert perplexity_ratio(a, a) == 1.0
    assert (perplexity_ratio(a, b) > 1) == (a > b)
    assert perplexity_ratio(a, b) * perplexity_ratio(b, c) == pytest.approx(perplexity_ratio(a, c))


@pytest.mark.parametrize("after, before", [(0.0, 1.0), (1.0, math.inf), (math.nan, 1.0), (1.0, -2.0)])
def test_perplexity_ratio_rejects_what_no_text_has(after, before):
    with pytest.raises(ValueError, match="finite and positive"):
        perplexity_ratio(after, before)


@given(st.lists(st.floats(0, 10)))
def test_update_norm_is_the_largest_matrix_change_and_zero_without_one(norms):
    value = update_norm(norms)
    assert all(value >= x for x in norms) and (value in norms if norms else value == 0.0)
    assert update_norm([0.0] * len(norms)) == 0.0


checkpoint_curves = st.integers(1, 12).flatmap(lambda n: st.tuples(
    st.lists(st.floats(0.5, 4.0), min_size=n, max_size=n), st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n),
    st.integers(1, 50)))


@given(checkpoint_curves)
def test_collapse_point_is_the_first_checkpoint_that_broke_or_the_streams_length(curve):
    ratios, kept, spacing = curve
    edits = [spacing * (k + 1) for k in range(len(ratios))]
    total = edits[-1] + spacing
    point = collapse_point(edits, ratios, kept, total)
    broke = [ratio >= COLLAPSE_PERPLEXITY or loc < COLLAPSE_LOCALITY for ratio, loc in zip(ratios, kept)]
    assert point in (*edits, total)
    assert not any(broke[: edits.index(point)] if point in edits else broke)
    assert point == total or broke[edits.index(point)]
    assert collapse_point(edits, [1.0] * len(edits), [1.0] * len(edits), total) == total


@given(checkpoint_curves, st.data())
def test_collapse_point_comes_no_later_when_perplexity_rises_or_locality_falls(curve, data):
    ratios, kept, spacing = curve
    edits = [spacing * (k + 1) for k in range(len(ratios))]
    i = data.draw(st.integers(0, len(ratios) - 1))
    worse_ratios = [*ratios[:i], data.draw(st.floats(ratios[i], 8.0)), *ratios[i + 1:]]
    worse_kept = [*kept[:i], data.draw(st.floats(0.0, kept[i])), *kept[i + 1:]]
    before = collapse_point(edits, ratios, kept, edits[-1])
    assert collapse_point(edits, worse_ratios, kept, edits[-1]) <= before
    assert collapse_point(edits, ratios, worse_kept, edits[-1]) <= before


@pytest.mark.parametrize("call", [
    lambda: preference_share([], []), lambda: preference_share([0.1], [0.1, 0.2]), lambda: retention([True], []),
    lambda: locality([], []), lambda: locality([0.1], []), lambda: collapse_point([1], [1.0, 1.0], [1.0], 1),
], ids=["share-empty", "share-lengths", "retention-lengths", "locality-empty", "locality-lengths", "collapse-lengths"])
def test_sequential_metrics_reject_empty_or_mismatched_inputs(call):
    with pytest.raises(ValueError):
        call()


def test_sequential_metrics_examples():
    assert preference_share([0.4, 0.2, 0.3], [0.1, 0.2, 0.5]) == pytest.approx(1 / 3)
    assert retention([True, True, False, True], [True, False, True, True]) == pytest.approx(2 / 3)
    assert locality([0.8, 0.8, 0.2], [0.4, 0.39, 0.0]) == pytest.approx(1 / 3)
    assert perplexity_ratio(30.0, 20.0) == 1.5
    assert collapse_point([10, 20, 30], [1.2, 2.0, 3.0], [0.9, 0.9, 0.1], 30) == 20
    assert collapse_point([10, 20, 30], [1.2, 1.9, 1.1], [0.9, 0.5, 0.6], 30) == 30


# --- strategies -----------------------------------------------------------------------------


@given(probabilities(), probabilities(allow_zero=True))
@example(1.0, 0.0)
def test_probabilities_are_in_range(positive, maybe_zero):
    assert 0.0 < positive <= 1.0
    assert 0.0 <= maybe_zero <= 1.0


@given(probability_vectors(min_size=3, max_size=5), paired_probability_vectors(min_size=2, max_size=4))
def test_probability_vectors_are_valid_inputs_of_the_metrics(vector, pair):
    assert 3 <= len(vector) <= 5
    assert all(0.0 <= x <= 1.0 for x in vector) and sum(vector) > 0
    p, q = pair
    assert 2 <= len(p) == len(q) <= 4
    assert sum(p) > 0 and sum(q) > 0


def _entity_record(entity):
    return {"label": entity.label} | ({"id": entity.id} if entity.id is not None else {})


def _relation_record(relation):
    return {"id": relation.id, "prompt": relation.prompt, "label": relation.label}


def _edit_record(edit, fact_before=None):
    """The upstream record of an edit; ``fact_before`` is a composite e2's object before e1."""
    record = {
        "subject": _entity_record(edit.subject),
        "relation": _relation_record(edit.relation),
        "object": _entity_record(edit.old),
        "new_object": _entity_record(edit.new),
    }
    if fact_before is not None:
        record |= {"object": _entity_record(fact_before), "true_object": _entity_record(edit.old)}
    return record


def _paraphrases(*relations):
    return {relation.id: list(relation.paraphrases) for relation in relations}


def _conflict_record(case: ConflictCase) -> dict:
    e1, e2 = case.edits
    record = {
        "triples": [
            {
                "subject": _entity_record(fact.subject),
                "relation": _relation_record(fact.relation),
                "object": _entity_record(fact.object),
            }
            for fact in case.triples
        ],
        "prerequisites": [0] if case.split == "composite" else [],
        "type": case.split,
        "edits": [_edit_record(e1), _edit_record(e2, e1.old if case.split == "composite" else None)],
    }
    return record | ({"rule": case.rule} if case.rule else {})


@settings(max_examples=30)
@given(conflict_cases())
def test_conflict_cases_parse_back_from_their_upstream_records(case):
    relations = [f.relation for f in case.triples] + [e.relation for e in case.edits]
    record, paraphrases = _conflict_record(case), _paraphrases(*relations)
    assert parse_conflict_case(record, case.split, case.index, "gen.json", paraphrases, "prompts.json") == case


@settings(max_examples=10)
@given(conflict_cases("coverage"), conflict_cases("reverse"), conflict_cases("composite"))
def test_conflict_cases_have_the_shape_of_their_split(coverage, reverse, composite):
    e1, e2 = coverage.edits
    assert (e2.subject, e2.relation, e2.old) == (e1.subject, e1.relation, e1.new)
    assert len({e1.old.label, e1.new.label, e2.new.label}) == 3
    e1, e2 = reverse.edits
    assert (e2.subject, e2.old) == (e1.new, e1.subject) and e2.relation.id != e1.relation.id
    e1, e2 = composite.edits
    assert composite.tied_fact == composite.triples[0]
    assert (composite.tied_fact.subject, composite.tied_fact.object) == (e2.subject, e1.subject)
    assert e2.old == e1.new and e2.new.label not in (e1.old.label, e1.new.label)
    for case in (coverage, reverse, composite):
        assert case.case_id == f"{case.split}-{case.index:04d}"
        for edit in case.edits:
            assert all(prompt.count("{}") == 1 for prompt in edit.relation.prompts)


@settings(max_examples=30)
@given(round_cases())
def test_round_cases_parse_back_from_their_upstream_records(case: RoundCase):
    record = {
        "type": case.arity,
        "edit": _edit_record(case.edit),
        "true_objects": [_entity_record(o) for o in case.true_objects],
    }
    paraphrases = _paraphrases(case.edit.relation)
    assert parse_round_case(record, case.split, case.index, "gen.json", paraphrases, "prompts.json") == case
    assert len(case.others) == len(case.true_objects) - 1 >= 1
    assert case.edit.new not in case.true_objects


@pytest.mark.parametrize("strategy, split", [(conflict_cases, "easy"), (round_cases, "coverage")])
def test_case_strategies_reject_a_split_of_the_other_benchmark(strategy, split):
    @settings(max_examples=1, database=None)
    @given(st.data())
    def draw_one(data):
        data.draw(strategy(split))

    with pytest.raises(ValueError, match=split):
        draw_one()

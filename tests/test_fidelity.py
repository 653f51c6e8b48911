"""The metric formulas against a transcription of the published summarize step
(``experiments/summarize.py``), per record, on random probabilities (docs/fidelity.md)."""

from __future__ import annotations

import numpy as np
import pytest
from test_metrics import upstream_js_div

from pytest_kedit.benchmark import metrics

RECORDS = 5000


def published_round(pre1: float, post1: float, pre2: float, post2: float, o1_before: float,
                    others_pre: list[float], others_post: list[float]) -> dict[str, float]:
    """One RoundEdit record of the summarize step (``success``, ``D``, ``IR``, ``FR`` before averaging)."""
    fail_num = sum(1 for pre, post in zip(others_pre, others_post) if pre > post)
    ir = fail_num / len(others_pre)
    return {
        "succ": (0.5 if post1 > pre1 else 0) + (0.5 if post2 > pre2 else 0),
        "d": upstream_js_div([o1_before, *others_pre], [post2, *others_post]),
        "ir": ir,
        "fr": 1 if ir > 0.5 else 0,
    }


def test_conflict_metrics_equal_the_summarize_step_on_random_records():
    rng = np.random.default_rng(0)
    p = rng.uniform(1e-6, 1, size=(RECORDS, 4))
    p[::7, 1] = p[::7, 0]  # ties
    for cs_pre, cs_post, cm_pre, cm_post in p.tolist():
        assert metrics.conflict_score(cs_post, cs_pre) == (1 if cs_post > cs_pre else 0)
        assert metrics.conflict_magnitude(cm_pre, cm_post) == max((cm_pre - cm_post) / cm_pre, -1)
        assert metrics.tied_fact_damage(cm_pre, cm_post) == (cm_pre - cm_post) / cm_pre
        assert metrics.single_success(cs_post, cs_pre) == (1 if cs_post > cs_pre else 0)


def test_round_metrics_equal_the_summarize_step_on_random_records():
    rng = np.random.default_rng(1)
    for _ in range(RECORDS // 5):
        n = int(rng.integers(1, 5))
        pre1, post1, pre2, post2, o1_before = rng.uniform(1e-6, 1, size=5).tolist()
        others_pre, others_post = rng.uniform(1e-6, 1, size=(2, n)).tolist()
        expected = published_round(pre1, post1, pre2, post2, o1_before, others_pre, others_post)
        ir = metrics.ignore_rate(others_pre, others_post)
        assert metrics.round_success(post1, pre1, post2, pre2) == expected["succ"]
        assert ir == expected["ir"] and metrics.failure(ir) == expected["fr"]
        d = metrics.distortion([o1_before, *others_pre], [post2, *others_post], scaling="upstream")
        assert d == pytest.approx(expected["d"], rel=1e-5, abs=1e-9)

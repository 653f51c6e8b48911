"""The suites on the real embedded model, end to end, as the README's main job runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SUITES = Path(__file__).resolve().parents[1] / "suites"


@pytest.mark.slow
def test_ft_on_smollm2_prints_both_tables_and_edits_for_real(pytester: pytest.Pytester, tmp_path: Path, user_cache):
    for suite in SUITES.glob("test_*_edit.py"):  # the paper's suites
        pytester.makepyfile(**{suite.stem: suite.read_text()})
    report = tmp_path / "report"
    result = pytester.runpytest_subprocess(
        "--kedit-model=smollm2-135m", "--kedit-method=ft", "--kedit-split=coverage,easy", "--kedit-limit=1",
        f"--kedit-report={report}",
    )
    out = result.stdout.str()
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), out
    assert "Table 1" in out and "Table 2" in out
    records = {r["split"]: r for r in map(json.loads, (report / "cases.jsonl").read_text().splitlines())}
    coverage, easy = records["coverage"], records["easy"]
    assert coverage["error"] is None and easy["error"] is None
    # FT on the prompt itself makes the new object win on the edited model.
    assert coverage["metrics"]["single_succ"] == 1.0
    assert coverage["probabilities"]["theta_s"]["o3"] > coverage["probabilities"]["theta_s"]["o2"]
    assert easy["probabilities"]["theta_m"]["o*"] > easy["probabilities"]["theta_m"]["o1"]
    summary = json.loads((report / "summary.json").read_text())
    assert summary["model_fingerprint"].startswith("smollm2-135m@sha256:b179c952")


@pytest.mark.slow
def test_rome_on_smollm2_edits_and_says_where_its_statistics_came_from(
    pytester: pytest.Pytester, tmp_path: Path, user_cache
):
    for suite in SUITES.glob("test_*_edit.py"):  # the paper's suites
        pytester.makepyfile(**{suite.stem: suite.read_text()})
    hparams = tmp_path / "rome.yaml"  # the packaged defaults, with a corpus small enough for a test
    hparams.write_text(
        "layers: [4]\nv_num_grad_steps: 10\nv_lr: 1.5\ncontext_template_length_params: [[5, 3]]\n"
        "mom2_adjustment: true\nmom2_dataset: null\nmom2_n_samples: 16\n"
    )
    report = tmp_path / "report"
    result = pytester.runpytest_subprocess(
        "--kedit-model=smollm2-135m", "--kedit-method=rome", f"--kedit-hparams={hparams}",
        "--kedit-split=coverage", "--kedit-limit=1", f"--kedit-report={report}",
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    (record,) = map(json.loads, (report / "cases.jsonl").read_text().splitlines())
    assert record["metrics"]["single_succ"] == 1.0 and record["metrics"]["cs"] == 1.0
    statistics = json.loads((report / "summary.json").read_text())["statistics"]
    assert statistics["n_samples"] == 16 and "sampled" in statistics["corpus"]
    assert list(statistics["cache_files"]) == ["model.layers.4.mlp.down_proj"]

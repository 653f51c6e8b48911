"""The baselines shipped in ``.kedit/baselines`` (the README's main job gates against FT's) belong
to the built-in suites and packaged defaults as they are: changing a built-in file or a method's
packaged hyper-parameters without re-making its baseline would make a gated run refuse to start,
so this fails first."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from pytest_kedit.benchmark.registry import SPLITS
from pytest_kedit.ci.baseline import read_baseline
from pytest_kedit.dataset.sources import load_suite
from pytest_kedit.editors import editor_class
from pytest_kedit.editors.corpus import sampled_corpus_fingerprint
from pytest_kedit.editors.hparams import load_hparams

SHIPPED = sorted((Path(__file__).parents[1] / ".kedit" / "baselines" / "smollm2-135m").glob("*.json"))


def test_the_main_job_has_its_baseline():
    assert "ft.json" in [path.name for path in SHIPPED]


@pytest.mark.parametrize("path", SHIPPED, ids=[path.stem for path in SHIPPED])
def test_a_shipped_baseline_covers_every_built_in_case_with_the_files_as_they_are(path: Path):
    baseline = read_baseline(path)
    suite = load_suite(None, tuple(SPLITS), None, None, 0)
    assert (baseline.provenance["model"], baseline.provenance["method"]) == ("smollm2-135m", path.stem)
    assert baseline.provenance["data_files"] == suite.files
    assert set(baseline.cases) == {(entry.split, entry.case_id) for _, entry in suite.entries(tuple(SPLITS))}
    assert all(record.outcome != "error" for record in baseline.cases.values())


@pytest.mark.parametrize("path", SHIPPED, ids=[path.stem for path in SHIPPED])
def test_a_shipped_baseline_was_made_with_the_packaged_defaults(path: Path):
    editor = editor_class(path.stem)
    packaged = load_hparams(editor.hparams_folder or editor.name, editor.hparams_class, "smollm2-135m", "llama",
                            package=editor.hparams_package)
    assert read_baseline(path).provenance["hparams"] == json.loads(json.dumps(dataclasses.asdict(packaged), default=str))


@pytest.mark.parametrize("path", SHIPPED, ids=[path.stem for path in SHIPPED])
def test_a_shipped_baseline_on_sampled_statistics_was_made_on_the_corpus_the_sampler_draws_now(path: Path):
    """A new sampler draws another corpus: its baselines must be made again, or gated runs refuse."""
    provenance = read_baseline(path).provenance
    hparams = provenance["hparams"]
    if hparams.get("mom2_adjustment") and hparams.get("mom2_dataset") is None:
        assert provenance["editor_fingerprint"] == sampled_corpus_fingerprint()

"""A third-party editor as a user ships it: an installed distribution (a ``*.dist-info`` with a
``pytest_kedit.editors`` entry point) whose editor is the example of docs/custom-editor.md, run on
the built-in suites with no hyper-parameter file; and one that ships its own per-family defaults
(``Editor.hparams_package``)."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITES = ROOT / "suites"


def doc_blocks(doc: str, language: str) -> list[str]:
    """The fenced code blocks of ``language`` in ``docs/<doc>``."""
    text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def install(site: Path, distribution: str, files: dict[str, str], entry_points: str) -> None:
    """What ``pip install`` leaves in ``site``: the package's files and ``<name>-0.1.dist-info``
    with its METADATA and entry points."""
    for name, text in files.items():
        path = site / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    info = site / f"{distribution}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    (info / "top_level.txt").write_text(next(iter(files)).split("/")[0] + "\n")


def entry_points_of_doc() -> str:
    """docs/custom-editor.md's ``[project.entry-points."pytest_kedit.editors"]`` as entry_points.txt."""
    (toml,) = [block for block in doc_blocks("custom-editor.md", "toml") if "pytest_kedit.editors" in block]
    name, _, target = toml.splitlines()[1].partition("=")
    return f"[pytest_kedit.editors]\n{name.strip()} = {target.strip().strip(chr(34))}\n"


@pytest.fixture
def project(pytester: pytest.Pytester, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The built-in suites on the tiny model, with ``site`` (where distributions are installed)
    on the subprocesses' ``sys.path``; no ``kedit_hparams``."""
    for suite in SUITES.glob("test_*_edit.py"):  # the paper's suites
        pytester.makepyfile(**{suite.stem: suite.read_text()})
    pytester.makeini(f"[pytest]\nkedit_model = {tiny_model_dir}\nkedit_limit = 1\n")
    monkeypatch.setenv("PYTHONPATH", str(pytester.path / "site"))
    return pytester


def test_the_doc_registers_mine_from_my_package() -> None:
    assert entry_points_of_doc() == "[pytest_kedit.editors]\nmine = my_package.editor:MyEditor\n"


@pytest.mark.slow
def test_the_documented_editor_installed_as_a_distribution_runs_the_suites(project: pytest.Pytester,
                                                                           tmp_path: Path) -> None:
    interface = doc_blocks("custom-editor.md", "python")[0]
    assert "class MyEditor(Editor):" in interface and "kedit_hparams" not in interface
    install(project.path / "site", "my_package", {"my_package/__init__.py": "", "my_package/editor.py": interface},
            entry_points_of_doc())
    report = tmp_path / "report"
    result = project.runpytest_subprocess("--kedit-method=mine", f"--kedit-report={report}")
    out = result.stdout.str()
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), out  # the skeleton edits nothing
    assert "× mine" in out and "Table 1: Knowledge Conflict" in out and "Table 2: Knowledge Distortion" in out
    records = [json.loads(line) for line in (report / "cases.jsonl").read_text().splitlines()]
    assert len(records) == 5 and {r["method"] for r in records} == {"mine"}
    assert all(r["outcome"] != "error" and r["metrics"] for r in records)
    summary = json.loads((report / "summary.json").read_text())
    assert summary["method"] == "mine" and summary["hparams"] == {"layers": None, "num_steps": 10, "lr": 0.001}


THEIRS = '''
from dataclasses import dataclass

from pytest_kedit import Editor, snapshot


@dataclass
class TheirHyperParams:
    layers: list[int]          # no default: the run needs a file for the model
    scale: float = 1.0


class TheirEditor(Editor):
    name = "theirs"
    hparams_class = TheirHyperParams
    hparams_package = "their_package.hparams"

    def apply(self, model, tokenizer, requests):
        return snapshot(model, [self.loaded.modules.mlp_out_weight_name(layer) for layer in self.hparams.layers])
'''


@pytest.mark.slow
def test_a_distribution_ships_its_own_defaults_per_family(project: pytest.Pytester, tmp_path: Path) -> None:
    install(project.path / "site", "their_package", {
        "their_package/__init__.py": "",
        "their_package/editor.py": textwrap.dedent(THEIRS),
        "their_package/hparams/__init__.py": "",
        "their_package/hparams/llama.yaml": "layers: [2]\nscale: 0.5\n",  # the tiny model is a Llama
    }, "[pytest_kedit.editors]\ntheirs = their_package.editor:TheirEditor\n")
    report = tmp_path / "report"
    result = project.runpytest_subprocess("--kedit-method=theirs", "--kedit-split=reverse", f"--kedit-report={report}")
    assert "× theirs" in result.stdout.str() and "Table 1" in result.stdout.str()
    summary = json.loads((report / "summary.json").read_text())
    assert summary["method"] == "theirs" and summary["hparams"] == {"layers": [2], "scale": 0.5}
    (project.path / "site" / "their_package" / "hparams" / "llama.yaml").unlink()
    missing = project.runpytest_subprocess("--kedit-method=theirs", "--kedit-split=reverse")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    assert "no default hyper-parameters for method 'theirs'" in missing.stdout.str() + missing.stderr.str()

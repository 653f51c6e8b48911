"""Faults of the machine a run meets: a damaged cache entry, a run killed by SIGTERM, two runs on
one report folder, a cache that cannot be written, a disk that fills while the report is written."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from test_mend import TINY, trained_like
from test_resume import PROVENANCE, _interruptible, case_set, make_project, pytest_command, record, run_env, signal_after_two_cases, wait_for_cases
from test_rome import TINY_STATISTICS, one_thread_and_private_cache, tiny_loaded  # noqa: F401
from tiny_models import tiny_model

from pytest_kedit.editors.context_templates import context_templates
from pytest_kedit.editors.mend.checkpoint import load_trained, manifest_path, publish, trained_path
from pytest_kedit.editors.mend.editor import build_network
from pytest_kedit.editors.second_moment import second_moments
from pytest_kedit.model.embedded_models import convert_once
from pytest_kedit.model.loading import load_model
from pytest_kedit.model.original_probes import OriginalProbes
from pytest_kedit.results.run_files import RUN_FILE, CaseLog, ReportError, load_run, load_runs, merge_tables
from pytest_kedit.storage import digest
from pytest_kedit.storage.cache import cache_dir
from pytest_kedit.storage.digest import digest_path
from pytest_kedit.storage.verified import CacheError, read_entry, read_or_drop, read_or_refuse

DAMAGED = "kedit: cache entry {} is damaged"


def damage_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("pytest_kedit.storage")]


def truncate(path: Path, keep: float = 0.5) -> None:
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


def read_json(path: Path) -> object:
    return json.loads(path.read_text())


# -- the verified entry ------------------------------------------------------------------------


def writer(calls: list[Path], text: str = '{"a": 1}') -> Callable[[Path], None]:
    def build(tmp: Path) -> None:
        calls.append(tmp)
        tmp.write_text(text)

    return build


def test_an_entry_is_built_once_sealed_with_its_digest_and_read_verified(tmp_path: Path):
    calls: list[Path] = []
    path = tmp_path / "entry.json"
    assert read_entry(path, read_json, writer(calls)) == {"a": 1}
    assert read_entry(path, read_json, writer(calls)) == {"a": 1}
    assert len(calls) == 1
    recorded = read_json(digest_path(path))
    assert recorded == {"files": {".": {"size": 8, "sha256": digest.entry_digest(path)["."]["sha256"]}}}


@pytest.mark.parametrize("damage", ["truncated", "same size", "deleted digest and garbage"])
def test_a_damaged_entry_is_rebuilt_once_with_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str):
    calls: list[Path] = []
    path = tmp_path / "entry.json"
    read_entry(path, read_json, writer(calls))
    if damage == "truncated":
        truncate(path)
    elif damage == "same size":
        path.write_text('{"a": 2}')
    else:
        digest_path(path).unlink()
        path.write_text("{garbage")
    assert read_entry(path, read_json, writer(calls)) == {"a": 1}
    assert len(calls) == 2
    (line,) = damage_lines(caplog)
    why = {"truncated": "4 bytes, 8 when written", "same size": "content changed",
           "deleted digest and garbage": "JSONDecodeError: "}[damage]
    assert line.startswith(DAMAGED.format(path) + f" ({why}") and line.endswith("; rebuilding it")
    assert read_entry(path, read_json, writer(calls)) == {"a": 1} and len(calls) == 2


def test_an_entry_without_a_digest_that_reads_gets_one(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    path = tmp_path / "entry.json"
    path.write_text('{"old": 1}')
    calls: list[Path] = []
    assert read_entry(path, read_json, writer(calls)) == {"old": 1}
    assert not calls and not damage_lines(caplog) and digest_path(path).is_file()
    path.write_text('{"old": 2}')  # changed behind the cache's back: now it is noticed
    assert read_entry(path, read_json, writer(calls)) == {"a": 1} and len(calls) == 1


def test_an_entry_damaged_right_after_it_was_built_is_one_cache_error(tmp_path: Path):
    path = tmp_path / "entry.json"
    with pytest.raises(CacheError, match=r"entry.json is damaged \(JSONDecodeError: .*\) right after it was built; "
                                         r"delete it, check the disk holding"):
        read_entry(path, read_json, writer([], "{not json"))


def test_a_large_file_is_checked_by_its_size_and_its_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(digest, "WHOLE_LIMIT", 4 * digest.END_BLOCK)
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(range(256)) * (5 * digest.END_BLOCK // 256))
    digest.write_digest(path)
    assert digest.digest_problem(path) is None
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    assert digest.digest_problem(path) == "content changed since it was written"
    path.write_bytes(bytes(data[:-10]))
    assert digest.digest_problem(path) == f"{len(data) - 10} bytes, {len(data)} when written"


def test_a_directory_entry_names_the_file_that_is_missing(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    path = tmp_path / "model"

    def build(tmp: Path) -> None:
        (tmp / "sub").mkdir(parents=True)
        (tmp / "config.json").write_text("{}")
        (tmp / "sub" / "weights.bin").write_bytes(b"w" * 100)

    read_entry(path, lambda p: p, build)
    (path / "sub" / "weights.bin").unlink()
    read_entry(path, lambda p: p, build)
    assert damage_lines(caplog) == [DAMAGED.format(path) + " (sub/weights.bin: missing); rebuilding it"]
    assert (path / "sub" / "weights.bin").stat().st_size == 100


def test_an_entry_made_elsewhere_is_refused_and_a_remembered_one_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    path = tmp_path / "net.json"
    read_entry(path, read_json, writer([]))
    truncate(path)
    with pytest.raises(CacheError) as refused:
        read_or_refuse(path, read_json, "train it again")
    assert str(refused.value) == f"cache entry {path} is damaged (4 bytes, 8 when written); train it again"
    assert path.is_file()  # left for the user to look at
    assert read_or_drop(path, read_json) is None and not path.exists() and not digest_path(path).exists()
    assert damage_lines(caplog) == [DAMAGED.format(path) + " (4 bytes, 8 when written); "
                                                            "removed it; it is made again when needed"]


def test_an_entry_that_cannot_be_written_is_one_cache_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    path = blocker / "area" / "entry.json"
    with pytest.raises(CacheError, match=rf"^cannot write the cache entry {path}: Not a directory; free space or "
                                         r"make .* writable, or set KEDIT_CACHE_DIR to another folder$"):
        read_entry(path, read_json, writer([]))


# -- every cache of the harness, damaged -------------------------------------------------------


def test_a_truncated_second_moment_file_is_computed_again(caplog: pytest.LogCaptureFixture):
    loaded = tiny_loaded("llama", seed=3)
    module = loaded.modules.mlp_out.format(1)
    first, info = second_moments(loaded, [module], None, 12, "float32")
    mom2, inverse = first[module].mom2.clone(), first[module].inverse.clone()  # the file is memory-mapped
    del first
    entry = Path(info["cache_files"][module])
    truncate(entry)
    again, info_again = second_moments(loaded, [module], None, 12, "float32")
    assert info_again["computed"]
    assert torch.equal(mom2, again[module].mom2) and torch.equal(inverse, again[module].inverse)
    (line,) = damage_lines(caplog)
    assert line.startswith(DAMAGED.format(entry) + " (") and line.endswith("; rebuilding it")


def test_a_truncated_template_cache_is_sampled_again(caplog: pytest.LogCaptureFixture):
    loaded = tiny_loaded("gpt2", seed=3)
    templates = context_templates(loaded, TINY_STATISTICS["context_template_length_params"])
    (entry,) = [p for p in (cache_dir() / "context_templates").glob("tiny-gpt2-*.json") if not p.name.endswith(".lock")
                if json.loads(p.read_text()) == templates]
    truncate(entry)
    assert context_templates(loaded, TINY_STATISTICS["context_template_length_params"]) == templates
    (line,) = damage_lines(caplog)
    assert line.startswith(DAMAGED.format(entry)) and line.endswith("; rebuilding it")


def test_a_damaged_theta_probability_entry_is_dropped_and_measured_again(caplog: pytest.LogCaptureFixture):
    probes = OriginalProbes("tiny-theta-test", torch.float32, torch.device("cpu"))
    pairs = [("The capital of France is", "Paris")]
    probes.remember(pairs, torch.tensor([0.25]).numpy())
    (entry,) = probes.folder.glob("*.json")
    size = entry.stat().st_size
    truncate(entry)
    reopened = OriginalProbes("tiny-theta-test", torch.float32, torch.device("cpu"))
    assert reopened.lookup(pairs) is None  # so the harness probes the model again, and remembers it
    assert damage_lines(caplog) == [DAMAGED.format(entry) + f" ({size // 2} bytes, {size} when written); "
                                                             "removed it; it is made again when needed"]
    reopened.remember(pairs, torch.tensor([0.25]).numpy())
    assert OriginalProbes("tiny-theta-test", torch.float32, torch.device("cpu")).lookup(pairs).tolist() == [0.25]


def test_a_truncated_converted_model_is_converted_again(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """The conversion of an embedded model, with a tiny model standing for the GGUF."""
    target, loads = tmp_path / "models" / "tiny-llama", []

    def load() -> tuple[object, object]:
        loads.append(1)
        model, tokenizer = tiny_model("llama", seed=5)
        return model, tokenizer

    def read(directory: Path) -> dict[str, torch.Tensor]:
        weights = load_model(str(directory), device="cpu").model.state_dict()
        return {name: tensor.clone() for name, tensor in weights.items()}  # not the memory-mapped file

    first = convert_once(target, load, read)
    truncate(target / "model.safetensors", keep=0.9)
    again = convert_once(target, load, read)
    assert len(loads) == 2 and all(torch.equal(first[name], again[name]) for name in first)
    (line,) = damage_lines(caplog)
    assert line.startswith(DAMAGED.format(target) + " (model.safetensors: ") and line.endswith("; rebuilding it")


def test_a_damaged_mend_network_is_refused_in_one_line_saying_how_to_train_it_again():
    loaded = tiny_loaded("gpt2")
    network = build_network(loaded, TINY)
    trained_like(network)
    path = trained_path(loaded, network)
    publish(path, network, {"steps": 0})
    assert load_trained(network, loaded).startswith(str(path))
    truncate(path)
    with pytest.raises(CacheError) as refused:
        load_trained(network, loaded)
    message = str(refused.value)
    assert message.startswith(f"cache entry {path} is damaged (") and "\n" not in message
    assert message.endswith("a run cannot make it again: train it again with `kedit train-mend --model tiny-gpt2 "
                            "--from DATA --out DIR` (see kedit docs editors, MEND)")
    publish(path, network, {"steps": 0})
    manifest_path(path).write_text('{\n  "steps": 9\n}')  # as long as the manifest written
    with pytest.raises(CacheError, match=r"\.json is damaged \(content changed since it was written\)"):
        load_trained(network, loaded)


# -- an interrupted report folder, read back ---------------------------------------------------


def test_a_folder_without_summary_is_read_from_its_cases_and_run_json_and_labelled_partial(tmp_path: Path):
    with CaseLog(tmp_path) as log:
        log.append(record("coverage-0000"), PROVENANCE, cases_expected=10)
        log.append(record("coverage-0001", "failed"), PROVENANCE, cases_expected=10)
    summary, records = load_run(tmp_path)
    assert [r.case_id for r in records] == ["coverage-0000", "coverage-0001"]
    assert (summary.model, summary.method, summary.complete, summary.cases_done, summary.cases_expected) == (
        "tiny", "ft", False, 2, 10)
    assert summary.provenance() == {**PROVENANCE, "thresholds": ["cs>=1.0"], "sequential": None,
                                    "protocol_version": summary.provenance()["protocol_version"]}
    table1, table2 = merge_tables(load_runs([tmp_path]))
    note = "Note: tiny / ft: partial: 2 of 10 cases (the run did not finish)."
    assert table1.endswith(note) and table2.endswith(note)
    (tmp_path / RUN_FILE).unlink()
    with pytest.raises(ReportError, match=r"summary.json: missing"):
        load_run(tmp_path)


# -- runs as a user starts them ----------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, tiny_model_dir: Path, tiny_ft_hparams: Path) -> Path:
    return make_project(tmp_path, tiny_model_dir, tiny_ft_hparams)


ROME = ("layers: [1]\nv_num_grad_steps: 8\nclamp_norm_factor: 1000.0\nv_weight_decay: 0.0\n"
        "context_template_length_params: [[5, 2], [8, 2]]\nmom2_n_samples: 16\n")


def run_suites(project: Path, cache: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*pytest_command_without_report(), *args], cwd=project, env=run_env(cache, **env),
                          capture_output=True, text=True, check=False, timeout=900)


def pytest_command_without_report() -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-q"]


def kedit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "import sys; from pytest_kedit.cli.main import main; "
                           "sys.exit(main(sys.argv[1:]))", *args], capture_output=True, text=True, check=False)


@pytest.mark.slow
def test_damaged_statistics_templates_and_probabilities_are_rebuilt_with_a_line_each_and_change_nothing(
        project: Path, tmp_path: Path):
    hparams = tmp_path / "rome.yaml"
    hparams.write_text(ROME)
    cache, first, second = tmp_path / "cache", tmp_path / "first", tmp_path / "second"
    args = ("--kedit-method=rome", f"--kedit-hparams={hparams}", "--kedit-split=coverage,easy")
    before = run_suites(project, cache, f"--kedit-report={first}", *args)
    (statistics,) = [p for p in (cache / "second_moment").rglob("*.safetensors") if "sampled-corpus" not in p.name]
    (templates,) = (cache / "context_templates").glob("*.json")
    probabilities = sorted((cache / "original-probes").rglob("*.json"))[0]
    for entry in (statistics, templates, probabilities):
        truncate(entry)
    after = run_suites(project, cache, f"--kedit-report={second}", *args)
    assert after.returncode == before.returncode, after.stdout[-3000:]
    lines = [line for line in after.stdout.splitlines() if line.startswith("kedit: cache entry")]
    assert [any(str(entry) in line for line in lines) for entry in (statistics, templates, probabilities)] == [True] * 3
    assert len(lines) == 3 and all(line.endswith(("; rebuilding it", "; it is made again when needed")) for line in lines)
    assert "Traceback" not in after.stdout + after.stderr
    assert case_set(second) == case_set(first)


@pytest.mark.slow
def test_an_error_inside_a_case_is_an_error_of_the_case_not_a_failure(project: Path, tmp_path: Path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("too few words")
    hparams = tmp_path / "rome.yaml"
    hparams.write_text(ROME + f"mom2_dataset: {corpus}\n")
    result = run_suites(project, tmp_path / "cache", f"--kedit-report={tmp_path / 'report'}", "--kedit-method=rome",
                        f"--kedit-hparams={hparams}", "--kedit-split=coverage")
    assert result.returncode == pytest.ExitCode.TESTS_FAILED
    assert "2 errors in " in result.stdout.splitlines()[-1] and "failed" not in result.stdout.splitlines()[-1]
    assert "ERROR test_conflict_edit.py::test_conflict_edit[coverage-0000] - " in result.stdout
    assert re.search(r"_ ERROR at call of test_conflict_edit\[coverage-0000\] _+\nsecond moment of .* too few to invert",
                     result.stdout)
    records = [json.loads(line) for line in (tmp_path / "report" / "cases.jsonl").read_text().splitlines()]
    assert [r["outcome"] for r in records] == ["error", "error"] and "too few to invert" in records[0]["error"]


def terminate_after_two_cases(project: Path, report: Path, cache: Path, *args: str) -> str:
    """Run the suites and send SIGTERM once two cases are in cases.jsonl; the run's output. Under
    pytest-xdist it goes to the process group, as ``timeout`` sends it; a serial run raises it in
    its own main thread after its second case."""
    serial = "-n" not in args
    env = run_env(cache, KEDIT_TEST_PACE="1", **(signal_after_two_cases("SIGTERM") if serial else {}))
    process = subprocess.Popen(pytest_command(report, *args), cwd=project, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=_interruptible)
    if not serial:
        wait_for_cases(process, report, 2)
        os.killpg(process.pid, signal.SIGTERM)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == pytest.ExitCode.INTERRUPTED, output[:3000] + "\n[...]\n" + output[-3000:]
    return output


@pytest.mark.slow
@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_sigterm_stops_the_run_as_ctrl_c_does_and_the_folder_is_reported_and_resumed(project: Path, tmp_path: Path,
                                                                                      workers: tuple[str, ...]):
    report, cache = tmp_path / "report", tmp_path / "cache"
    output = terminate_after_two_cases(project, report, cache, *workers)
    summary = json.loads((report / "summary.json").read_text())
    done = summary["cases_done"]
    assert summary["complete"] is False and 2 <= done < summary["cases_expected"] == 10
    assert f"partial: {done} of 10 cases" in (report / "table1.md").read_text()
    assert (f"kedit: stopped by SIGTERM, as by Ctrl-C: {done} finished cases kept in {report}, "
            "--kedit-resume continues the run") in output
    shown = kedit("report", str(report))
    assert shown.returncode == 0 and f"Note: {project_model(project)} / ft: partial: {done} of 10 cases" in shown.stdout

    killed = tmp_path / "killed"  # as a SIGKILL leaves it: the case log and run.json only
    killed.mkdir()
    for name in ("cases.jsonl", "run.json"):
        (killed / name).write_bytes((report / name).read_bytes())
    shown = kedit("report", str(killed))
    assert shown.returncode == 0 and f"partial: {done} of 10 cases (the run did not finish)" in shown.stdout

    resumed = subprocess.run(pytest_command(report, "--kedit-resume", *workers), cwd=project, env=run_env(cache),
                             capture_output=True, text=True, check=False)
    assert f"resumed {report}: {done} cases reported from their records" in resumed.stdout
    summary = json.loads((report / "summary.json").read_text())
    assert (summary["complete"], summary["cases_done"]) == (True, 10)


def project_model(project: Path) -> str:
    """The kedit_model of the project's ini file."""
    return next(line.split("=", 1)[1].strip() for line in (project / "pytest.ini").read_text().splitlines()
                if line.startswith("kedit_model"))


@pytest.mark.slow
def test_a_second_run_on_a_folder_in_use_is_refused_in_one_line_naming_the_holder(project: Path, tmp_path: Path):
    report, cache = tmp_path / "report", tmp_path / "cache"
    first = subprocess.Popen(pytest_command(report), cwd=project, env=run_env(cache, KEDIT_TEST_PACE="0.5"),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    holder = tmp_path / "report.lock.holder"
    deadline = time.monotonic() + 120
    while not holder.is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(pytest_command(report, "-k", "coverage"), cwd=project, env=run_env(cache),
                            capture_output=True, text=True, check=False)
    output, _ = first.communicate(timeout=600)
    assert second.returncode == pytest.ExitCode.USAGE_ERROR
    (line,) = [line for line in (second.stdout + second.stderr).splitlines() if line.strip()]
    assert line.startswith(f"ERROR: kedit: --kedit-report: {report} is being written by another run "
                           f"(pid {first.pid} on host {socket.gethostname()} since ")
    assert line.endswith("); wait for it to finish, or report into another folder")
    assert first.returncode in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), output[-3000:]
    summary = json.loads((report / "summary.json").read_text())
    assert (summary["complete"], summary["cases_done"]) == (True, 10)
    assert not holder.exists()


def unwritable_caches(tmp_path: Path) -> list[Path]:
    """Cache folders no run can write: one below a file (for every user), and a read-only folder
    (not for root, whom permissions do not stop)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    folders = [blocker / "cache"]
    if os.geteuid() != 0:
        read_only = tmp_path / "read-only"
        read_only.mkdir(mode=0o555)
        folders.append(read_only)
    return folders


def test_a_cache_that_cannot_be_written_stops_the_run_in_one_line_before_any_model_loads(
        kedit_project: Callable[..., pytest.Pytester], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    project = kedit_project(kedit_limit=1)
    for cache in unwritable_caches(tmp_path):
        monkeypatch.setenv("KEDIT_CACHE_DIR", str(cache))
        result = project.runpytest_subprocess("-p", "no:randomly", "--collect-only")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        lines = [line for line in result.stderr.lines if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"ERROR: kedit: the cache folder {cache} cannot be written (")
        assert lines[0].endswith("); make it writable, or set KEDIT_CACHE_DIR to a folder that can be")


def limit_file_size(size: int) -> Callable[[], None]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return limit


@pytest.mark.slow
def test_a_disk_that_fills_while_the_report_is_written_costs_one_line_and_nothing_written(project: Path,
                                                                                           tmp_path: Path):
    """A file size limit stands for a full disk: a write past it fails (EFBIG) as on a full disk (ENOSPC).
    It lets run.json and a case or two into the folder, not the whole case log."""
    report = tmp_path / "report"
    result = subprocess.run(pytest_command(report, "--capture=sys"), cwd=project, env=run_env(tmp_path / "cache"),
                            capture_output=True, text=True, check=False, preexec_fn=limit_file_size(2000))
    assert result.returncode == pytest.ExitCode.TESTS_FAILED
    lines = [line for line in result.stdout.splitlines() if line.startswith("kedit: report")]
    assert lines == [f"kedit: report {report} not written: {report / 'cases.jsonl'}: cannot write: File too large "
                     "(the cases it already held are kept)"]
    assert "Traceback" not in result.stdout + result.stderr and "Table 1: Knowledge Conflict" in result.stdout
    written = (report / "cases.jsonl").read_text()
    assert written.endswith("\n") and 1 <= len(written.splitlines()) < 10
    shown = kedit("report", str(report))
    assert shown.returncode == 0 and f"partial: {len(written.splitlines())} of 10 cases" in shown.stdout

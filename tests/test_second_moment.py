"""Second-moment statistics and context templates: what they compute, and that they are cached safely."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
from test_rome import one_thread_and_private_cache, tiny_loaded  # noqa: F401
from tiny_models import WORDS

from pytest_kedit.editors.context_templates import context_templates
from pytest_kedit.editors.corpus import corpus_windows, resolve_corpus
from pytest_kedit.editors.second_moment import second_moments
from pytest_kedit.errors import KeditError
from pytest_kedit.model.tracing import Trace

TESTS = Path(__file__).resolve().parent


def write_corpus(path: Path, words: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path.write_text(" ".join(rng.choice(WORDS[:-1]) for _ in range(words)))
    return path


def test_second_moment_is_the_mean_outer_product_of_the_keys_over_the_corpus(tmp_path: Path):
    loaded = tiny_loaded("gpt2")
    corpus = write_corpus(tmp_path / "corpus.txt", 3000)
    module = loaded.modules.mlp_out.format(1)
    moments, info = second_moments(loaded, [module], str(corpus), 8, "float32")

    keys = []
    with torch.no_grad():
        for window in corpus_windows(loaded, resolve_corpus(str(corpus)), 8):
            with Trace(loaded.model, module, retain_input=True) as trace:
                loaded.model(input_ids=torch.tensor([window]))
            keys.append(trace.input(module)[0])
    K = torch.cat(keys).double()
    expected = K.T @ K / len(K)
    torch.testing.assert_close(moments[module].mom2.double(), expected, rtol=1e-4, atol=1e-7)
    identity = torch.eye(len(expected), dtype=torch.float64)
    torch.testing.assert_close(moments[module].inverse.double() @ expected, identity, rtol=0, atol=1e-2)
    assert info["corpus"] == f"file {corpus.resolve()}" and info["tokens"] == len(K) == 8 * 64
    assert info["n_samples"] == 8 and info["dtype"] == "float32" and Path(info["cache_files"][module]).is_file()


def test_statistics_are_computed_once_then_read_from_the_cache():
    loaded = tiny_loaded("llama")
    modules = [loaded.modules.mlp_out.format(layer) for layer in (0, 2)]
    first, info = second_moments(loaded, modules, None, 12, "float32")
    files = [Path(info["cache_files"][m]) for m in modules]
    stamps = [f.stat().st_mtime_ns for f in files]
    assert info["computed"] and info["corpus"] == "text sampled from the model (seed 0)"
    again, info_again = second_moments(loaded, modules, None, 12, "float32")
    assert not info_again["computed"]
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert all(torch.equal(first[m].mom2, again[m].mom2) and torch.equal(first[m].inverse, again[m].inverse) for m in modules)


def test_only_the_missing_statistics_are_computed_and_in_one_pass(monkeypatch: pytest.MonkeyPatch):
    loaded = tiny_loaded("gpt2")
    modules = [loaded.modules.mlp_out.format(layer) for layer in (0, 1, 2)]
    _, info = second_moments(loaded, modules[1:2], None, 12, "float32")
    kept = Path(info["cache_files"][modules[1]]).stat().st_mtime_ns
    passes = []
    forward = loaded.model.base_model.forward
    monkeypatch.setattr(loaded.model.base_model, "forward", lambda *a, **k: passes.append(1) or forward(*a, **k))
    _, info = second_moments(loaded, modules, None, 12, "float32")
    assert info["computed"] and len(passes) == 1, "12 windows of 64 tokens are one batch: one pass for both missing modules"
    assert Path(info["cache_files"][modules[1]]).stat().st_mtime_ns == kept
    assert all(Path(info["cache_files"][m]).is_file() for m in modules)


def test_each_corpus_sample_count_and_dtype_has_its_own_entry(tmp_path: Path):
    loaded = tiny_loaded("gpt_neox")
    module = loaded.modules.mlp_out.format(0)
    corpus = str(write_corpus(tmp_path / "c.txt", 3000))
    files = {
        second_moments(loaded, [module], dataset, n, dtype)[1]["cache_files"][module]
        for dataset, n, dtype in [(None, 12, "float32"), (None, 14, "float32"), (None, 12, "float64"), (corpus, 12, "float32")]
    }
    assert len(files) == 4


def test_a_corpus_too_small_to_invert_is_a_clear_error(tmp_path: Path):
    loaded = tiny_loaded("gpt2")
    corpus = write_corpus(tmp_path / "tiny.txt", 40)
    with pytest.raises(KeditError, match="too few to invert; raise mom2_n_samples or give a larger corpus"):
        second_moments(loaded, [loaded.modules.mlp_out.format(0)], str(corpus), 100, "float32")


def test_a_folder_corpus_reads_its_text_files_in_name_order(tmp_path: Path):
    loaded = tiny_loaded("llama")
    (tmp_path / "b.txt").write_text("Paris Rome Berlin")
    (tmp_path / "a.txt").write_text("France Italy Germany")
    (tmp_path / "notes.md").write_text("Madrid")
    corpus = resolve_corpus(str(tmp_path))
    (window,) = corpus_windows(loaded, corpus, 4)
    assert loaded.tokenizer.decode(window) == "France Italy Germany Paris Rome Berlin"
    assert corpus.kind == "folder"


def test_dataset_names_need_the_datasets_package_else_sampled_text(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    assert resolve_corpus("wikipedia").kind == "sampled"
    monkeypatch.setitem(sys.modules, "datasets", types.ModuleType("datasets"))
    wikipedia = resolve_corpus("wikipedia")
    assert (wikipedia.kind, wikipedia.source) == ("hf", "wikimedia/wikipedia:20231101.en")
    assert resolve_corpus("someone/corpus:config").source == "someone/corpus:config"


@pytest.mark.slow
def test_concurrent_processes_compute_an_entry_once(tmp_path: Path):
    """Two processes ask for the same statistics at the same moment (a file barrier lines them up):
    one computes under the lock, the other waits and reads the complete file."""
    script = textwrap.dedent(
        f"""
        import os, sys, time
        sys.path.insert(0, {str(TESTS)!r})
        os.environ["KEDIT_CACHE_DIR"] = {str(tmp_path / "cache")!r}
        import torch
        torch.set_num_threads(1)
        from test_rome import tiny_loaded
        from pytest_kedit.editors.second_moment import second_moments
        loaded = tiny_loaded("gptj")
        barrier = {str(tmp_path)!r}
        open(os.path.join(barrier, f"ready-{{os.getpid()}}"), "w").close()
        while len([f for f in os.listdir(barrier) if f.startswith("ready-")]) < 2:
            time.sleep(0.01)
        moments, info = second_moments(loaded, [loaded.modules.mlp_out.format(1)], None, 24, "float32")
        print(info["computed"], float(moments[loaded.modules.mlp_out.format(1)].mom2.sum()))
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err[-2000:] for _, err in outputs]
    results = [out.split() for out, _ in outputs]
    assert sorted(computed for computed, _ in results) == ["False", "True"]
    assert results[0][1] == results[1][1]
    entries = list((tmp_path / "cache" / "second_moment").rglob("*"))
    assert not [e for e in entries if ".tmp-" in e.name], entries


def test_context_templates_are_sampled_once_and_cached():
    loaded = tiny_loaded("gemma3_text")
    templates = context_templates(loaded, [[5, 2], [8, 3]])
    assert len(templates) == 6 and templates[0] == "{}"
    assert all(t.endswith(". {}") and t.count("{}") == 1 for t in templates[1:])
    assert context_templates(loaded, [[5, 2], [8, 3]]) == templates
    assert context_templates(loaded, [[5, 2]]) != templates


def test_templates_corpus_and_statistics_are_built_on_the_build_threads_whatever_the_caller_has(monkeypatch, tmp_path):
    """An xdist worker has one thread and a serial run all the cores; what either leaves in the
    cache is built on model.threads.BUILD_THREADS (seen from inside each build), and the caller's
    count is back after."""
    from pytest_kedit.editors import context_templates as templates_module
    from pytest_kedit.editors import corpus as corpus_module
    from pytest_kedit.editors import second_moment as second_moment_module
    from pytest_kedit.model import threads as threads_module

    monkeypatch.setenv("KEDIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(threads_module, "BUILD_THREADS", 3)  # any count but the caller's (the fixture sets 1)
    seen: dict[str, int] = {}

    def spy(module: types.ModuleType, name: str) -> None:
        real = getattr(module, name)

        def recorded(*args, **kwargs):
            seen[name] = torch.get_num_threads()
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, recorded)

    spy(templates_module, "_sample")
    spy(corpus_module, "sample_windows")
    spy(second_moment_module, "_compute")
    loaded = tiny_loaded("llama")
    torch.set_num_threads(1)
    context_templates(loaded, [[5, 2]])
    second_moments(loaded, ["model.layers.1.mlp.down_proj"], None, 4, "float32")
    assert seen == {"_sample": 3, "sample_windows": 3, "_compute": 3}
    assert torch.get_num_threads() == 1

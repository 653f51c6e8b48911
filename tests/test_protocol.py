"""--kedit-protocol: each choice of ``paper`` and ``upstream``, the option's parsing and precedence,
and where a run says which protocol produced it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from pytest_kedit.benchmark import metrics
from pytest_kedit.benchmark.cases import Edit, Entity, Relation, RoundCase
from pytest_kedit.benchmark.plans import round_trip
from pytest_kedit.benchmark.protocol import PAPER, UPSTREAM, resolve_protocol
from pytest_kedit.benchmark.scoring import round_trip as score_round_trip
from pytest_kedit.editors.ft import FTHyperParams
from pytest_kedit.editors.hparams import load_hparams
from pytest_kedit.editors.memit import MEMITHyperParams
from pytest_kedit.editors.rome import ROMEHyperParams
from pytest_kedit.errors import ConfigError
from pytest_kedit.model.original_probes import OriginalProbes
from pytest_kedit.model.probe import Encoder
from pytest_kedit.results.tables import TableRow, table1, table2
from pytest_kedit.run.options import read_options

TEXT = ["The father of Alice is Bob", "The mother of Alice is Carol", "Paris is the capital of France", "  spaces  "]


@pytest.fixture(scope="module")
def byte_level() -> PreTrainedTokenizerFast:
    """A GPT-2-style byte-level BPE, where a trailing space is a token of its own."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(TEXT, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend)


# --- (a) prompts ending in a space ---------------------------------------------------------------


def test_a_prompt_ending_in_a_space_is_scored_after_a_space_token_only_under_upstream(byte_level):
    prompt, target = "The father of Alice is ", "Bob"
    paper = Encoder(byte_level, PAPER.keep_trailing_space)(prompt, target)
    upstream = Encoder(byte_level, UPSTREAM.keep_trailing_space)(prompt, target)
    ids = lambda text: tuple(byte_level(text)["input_ids"])  # noqa: E731
    assert paper.prefix + paper.target == ids("The father of Alice is Bob")
    # The published code: tok(f"{prefix} {object}") with the prefix's own tokens in front.
    assert upstream.prefix + upstream.target == ids("The father of Alice is  Bob")
    assert upstream.prefix == paper.prefix + ids(" ") and upstream.target == paper.target == ids(" Bob")


def test_a_prompt_without_a_trailing_space_is_scored_alike_under_both(byte_level):
    paper, upstream = (Encoder(byte_level, keep)("The father of Alice is", "Bob") for keep in (False, True))
    assert paper == upstream


def test_the_original_probes_of_the_two_scorings_are_cached_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("KEDIT_CACHE_DIR", str(tmp_path))
    cpu = torch.device("cpu")
    paper, upstream = (OriginalProbes("tiny", torch.float32, cpu, keep) for keep in (False, True))
    assert paper.folder != upstream.folder
    paper.remember([("The father of Alice is ", "Bob")], [0.25])
    assert OriginalProbes("tiny", torch.float32, cpu, True).lookup([("The father of Alice is ", "Bob")]) is None


# --- (c) a repeated o1 ----------------------------------------------------------------------------


def repeated_o1_case() -> RoundCase:
    relation = Relation("P37", "The official language of {} is", ("{} speaks",))
    german, french, italian = Entity("German"), Entity("French"), Entity("Italian")
    edit = Edit(Entity("Switzerland"), relation, german, Entity("English"))
    return RoundCase("easy-0000", "easy", 0, "1-4@P37", edit, (german, french, german, italian))


def test_a_repeated_o1_stays_among_others_only_under_upstream():
    case = repeated_o1_case()
    labels = lambda plan: [name for name, _ in plan[0].probes]  # noqa: E731
    assert labels(round_trip(case)) == ["German", "French", "Italian"]
    assert labels(round_trip(case, protocol=UPSTREAM)) == ["German", "French", "German", "Italian"]


def test_the_repeated_o1_counts_in_ir_and_d_under_upstream():
    case = repeated_o1_case()
    before = {"German": 0.5, "French": 0.1, "Italian": 0.1}
    after = {"German": 0.2, "French": 0.2, "Italian": 0.2}
    p = {"theta": before, "theta_m": {"o*": 0.6, "o1": 0.1}, "theta_prime": {**after, "o*": 0.1}}
    paper = score_round_trip(case, p).values
    upstream = score_round_trip(case, p, UPSTREAM).values
    assert paper["ir"] == 0.0 and upstream["ir"] == pytest.approx(1 / 3)
    assert paper["d"] == metrics.distortion([0.5, 0.1, 0.1], [0.2, 0.2, 0.2])
    assert upstream["d"] == metrics.distortion([0.5, 0.1, 0.5, 0.1], [0.2, 0.2, 0.2, 0.2], scaling="upstream")


# --- the option ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, protocol, distortion",
    [
        ((), "paper", "paper"),
        (("--kedit-protocol=upstream",), "upstream", "upstream"),
        (("--kedit-protocol=upstream", "--kedit-distortion=paper"), "upstream", "paper"),
        (("--kedit-distortion=upstream",), "paper", "upstream"),
    ],
)
def test_the_protocol_sets_the_distortion_unless_it_is_given(pytester, args, protocol, distortion):
    options = read_options(pytester.parseconfig(*args))
    assert (options.protocol.name, options.distortion, options.protocol.distortion) == (protocol, distortion, distortion)


def test_the_ini_key_chooses_the_protocol_and_the_command_line_wins(pytester):
    pytester.makeini("[pytest]\nkedit_protocol = upstream\n")
    assert read_options(pytester.parseconfig()).protocol == UPSTREAM
    assert read_options(pytester.parseconfig("--kedit-protocol=paper")).protocol == PAPER


def test_an_unknown_protocol_is_a_config_error_naming_the_option():
    with pytest.raises(ConfigError, match=r"^--kedit-protocol: 'published'; choose from paper, upstream$"):
        resolve_protocol("published")
    with pytest.raises(ConfigError, match=r"^--kedit-distortion: 'log2'"):
        resolve_protocol("upstream", "log2")


# --- hyper-parameters: the protocol over the packaged defaults, the user's file over the protocol ---


def test_the_protocol_sets_each_method_s_own_keys_over_the_packaged_defaults():
    chosen = UPSTREAM.hparams_defaults()
    assert load_hparams("ft", FTHyperParams, "smollm2-135m", "llama").objective_optimization == "target_new"
    assert load_hparams("ft", FTHyperParams, "smollm2-135m", "llama", overrides=chosen).objective_optimization == "prompt_last"
    assert load_hparams("rome", ROMEHyperParams, "smollm2-135m", "llama", overrides=chosen).update_key == "prompt"
    assert load_hparams("memit", MEMITHyperParams, "smollm2-135m", "llama", overrides=chosen).key_averaging == "grouped"
    paper = load_hparams("rome", ROMEHyperParams, "smollm2-135m", "llama", overrides=PAPER.hparams_defaults())
    assert paper == load_hparams("rome", ROMEHyperParams, "smollm2-135m", "llama") and paper.update_key == "averaged"


def test_a_key_the_user_s_file_sets_wins_over_the_protocol(tmp_path: Path):
    chosen = UPSTREAM.hparams_defaults()
    silent, explicit = tmp_path / "silent.yaml", tmp_path / "explicit.yaml"
    silent.write_text("layers: [1]\n")
    explicit.write_text("layers: [1]\nobjective_optimization: target_new\n")
    assert load_hparams("ft", FTHyperParams, "tiny", "llama", str(silent), overrides=chosen).objective_optimization == "prompt_last"
    assert load_hparams("ft", FTHyperParams, "tiny", "llama", str(explicit), overrides=chosen).objective_optimization == "target_new"


# --- where a run says which protocol produced it ------------------------------------------------------


def test_the_tables_titles_name_the_protocol_and_mark_mixed_rows():
    row = TableRow("tiny", "ft", {"splits": {}, "counts": {}})
    assert "Table 1: Knowledge Conflict (mean over cases ×100; protocol: upstream)" in table1([row], protocols=["upstream"])
    assert "(mean over cases ×100)" in table1([row])
    mixed = table2([row, row._replace(method="rome")], "paper", protocols=["paper", "upstream"])
    assert "protocol: MIXED" in mixed and "ft (protocol: paper)" in mixed and "rome (protocol: upstream)" in mixed


@pytest.mark.slow
def test_a_run_under_upstream_records_its_protocol(pytester, tiny_model_dir: Path, tiny_ft_hparams: Path, tmp_path: Path):
    suites = Path(__file__).resolve().parents[1] / "suites"
    for suite in suites.glob("test_*_edit.py"):  # the paper's suites
        pytester.makepyfile(**{suite.stem: suite.read_text()})
    report = tmp_path / "report"
    result = pytester.runpytest_subprocess(
        f"--kedit-model={tiny_model_dir}", f"--kedit-hparams={tiny_ft_hparams}", "--kedit-limit=1",
        "--kedit-protocol=upstream", f"--kedit-report={report}", "--kedit-threshold=cs=off",
    )
    summary = json.loads((report / "summary.json").read_text())
    assert (summary["protocol"], summary["distortion_scaling"]) == ("upstream", "upstream")
    assert summary["hparams"]["objective_optimization"] == "prompt_last"
    assert "protocol: upstream" in (report / "table1.md").read_text()
    assert "(protocol: upstream)" in result.stdout.str()


@pytest.mark.slow
def test_an_unknown_protocol_stops_the_run_with_one_line(pytester):
    result = pytester.runpytest_subprocess("--kedit-protocol=published")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "kedit: --kedit-protocol: 'published'; choose from paper, upstream" in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()

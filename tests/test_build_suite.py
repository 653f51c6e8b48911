"""``kedit build-suite`` on a tiny random model and a tiny source folder written for it.

The tiny model's greedy continuations are arbitrary words of its vocabulary, so the source is
written after asking the model: a fact meant to pass names a word of its prompt's continuation,
a fact meant to fail a vocabulary word that occurs in none of them.
"""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_models import WORDS, tiny_loaded, tiny_model

from pytest_kedit.benchmark.registry import CONFLICT_EDIT, ROUND_EDIT, SEQUENTIAL
from pytest_kedit.benchmark.registry import SPLIT_NAMES as SPLITS
from pytest_kedit.cli.main import main
from pytest_kedit.dataset.sources import SPLIT_FILES, builtin_folder, load_suite
from pytest_kedit.errors import DataError, KeditError
from pytest_kedit.model.loading import LoadedModel
from pytest_kedit.suite_build import knowledge_check
from pytest_kedit.suite_build.builder import DECISION_LOG, BuildSettings, build_suite
from pytest_kedit.suite_build.knowledge_check import PRODUCED_TOP_K, Continuations, contains
from pytest_kedit.suite_build.manifest import KEPT_SPLITS, MANIFEST

SUBJECTS = ("France", "Italy", "Germany", "Spain", "Canada", "Switzerland", "Marie", "Pierre", "Hamlet", "Alice")
CITY = {"id": "P131", "prompt": "{} is located in the city", "query": "?", "label": "located in"}
COUNTRY = {"id": "P17", "prompt": "{} is located in the country", "query": "?", "label": "country"}
CAPITAL = {"id": "P36", "prompt": "the capital of {} is", "query": "?", "label": "capital"}
CAPITAL_OF = {"id": "P1376", "prompt": "{} is the capital of", "query": "?", "label": "capital of"}
LANGUAGES = {"id": "P37", "prompt": "the official languages of {} are", "query": "?", "label": "official language"}
CONFLICT_PARAPHRASES = {r["id"]: [r["prompt"] + " a", "by " + r["prompt"]] for r in (CITY, COUNTRY, CAPITAL, CAPITAL_OF)}
ROUND_PARAPHRASES = {"P37": ["the languages of {} are", "{} is a language of"]}
STREAM_PARAPHRASES = {"P36": ["the capital city of {} is", "{} has its capital in"]}


def entity(label: str) -> dict[str, Any]:
    return {"id": None, "label": label}


def triple(relation: dict[str, Any], subject: str, obj: str) -> dict[str, Any]:
    return {"relation": relation, "subject": entity(subject), "object": entity(obj)}


def edit(relation: dict[str, Any], subject: str, old: str, new: str) -> dict[str, Any]:
    return {**triple(relation, subject, old), "new_object": entity(new)}


class Words:
    """Object labels chosen from what the tiny model continues a prompt with (its tokenizer has one
    token per word)."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.continuations = Continuations(loaded.model, loaded.tokenizer)

    def known(self, prompt: str, subject: str, avoid: tuple[str, ...] = ()) -> str | None:
        """A word the continuation of ``prompt`` contains, if it has one (it may only echo the subject)."""
        words = self.continuations(prompt).split()
        return next((w for w in words if self.eligible(w, subject, avoid)), None)

    def unknown(self, prompts: list[str], subject: str, avoid: tuple[str, ...] = ()) -> str:
        """A vocabulary word that none of the continuations of ``prompts`` contains."""
        text = " ".join(self.continuations(p) for p in prompts)
        return next(w for w in WORDS if self.eligible(w, subject, avoid) and not contains(text, w))

    @staticmethod
    def eligible(word: str, subject: str, avoid: tuple[str, ...] = ()) -> bool:
        return word.isalpha() and len(word) > 3 and word.casefold() not in subject.casefold() and word not in avoid

    def next_token_scores(self, prompts: list[str], subject: str) -> dict[str, tuple[int, float]]:
        """For each eligible vocabulary word: its best rank among the next tokens after any of
        ``prompts``, and its next-token probability averaged over them (the probe, for one token)."""
        tokenizer, model = self.loaded.tokenizer, self.loaded.model
        with torch.no_grad():
            logits = torch.stack([model(torch.tensor([tokenizer(p)["input_ids"]])).logits[0, -1] for p in prompts])
        probs = torch.softmax(logits.double(), -1).mean(0)
        scores = {}
        for word in dict.fromkeys(WORDS):
            if self.eligible(word, subject):
                (token,) = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
                rank = int((logits > logits[:, token : token + 1]).sum(-1).min())
                scores[word] = (rank, float(probs[token]))
        return scores


def composite_record(words: Words, subject: str, known: bool) -> dict[str, Any]:
    prompt = CITY["prompt"].format(subject)
    city = (known and words.known(prompt, subject)) or words.unknown([prompt], subject)
    return {
        "rule": "P131&P17>P17",
        "triples": [triple(CITY, subject, city), triple(COUNTRY, city, "Europe"), triple(COUNTRY, subject, "Europe")],
        "prerequisites": [0],
        "type": "composite",
        "edits": [
            edit(COUNTRY, city, "Europe", "Asia"),
            {**triple(COUNTRY, subject, "Europe"), "true_object": entity("Asia"), "new_object": entity("Canada")},
        ],
    }


def round_record(words: Words, subject: str, outcome: str, far: bool) -> dict[str, Any]:
    """A RoundEdit record meant to be kept, dropped as "not produced" or dropped as "target
    preferred" on the tiny model; ``far``: a kept case's target is its least probable word."""
    prompts = [p.format(subject) for p in (LANGUAGES["prompt"], *ROUND_PARAPHRASES["P37"])]
    scores = words.next_token_scores(prompts, subject)
    by_p = sorted(scores, key=lambda w: scores[w][1])  # least probable first
    produced = [w for w in by_p if scores[w][0] < PRODUCED_TOP_K]
    if outcome == "kept":
        o1, target = produced[-1], by_p[0] if far else by_p[len(by_p) // 2]
    elif outcome == "preferred":
        o1, target = produced[0], produced[-1]
    else:
        o1, target = next(w for w in by_p if scores[w][0] >= PRODUCED_TOP_K), by_p[-1]
    other = next(w for w in by_p if w not in (o1, target))
    return {
        "type": "1-2@P37",
        "edit": {"relation": LANGUAGES, "subject": entity(subject), "new_object": entity(target), "object": entity(o1)},
        "true_objects": [entity(o1), entity(other)],
    }


def stream_record(words: Words) -> dict[str, Any]:
    """A stream whose edits the tiny model keeps (France, Italy), does not produce (Germany) or
    prefers the new object of (Spain), each with a neighbour that it knows and one it does not
    produce, and a locality fact it knows and one it does not."""
    prompts = {s: [p.format(s) for p in (CAPITAL["prompt"], *STREAM_PARAPHRASES["P36"])] for s in SUBJECTS}

    def extremes(subject: str) -> tuple[str, str, str, str]:
        """The two words the model likes best after the prompts of ``subject`` (both produced), the
        one it likes least, and another one it never produces."""
        scores = words.next_token_scores(prompts[subject], subject)
        by_p = sorted(scores, key=lambda w: scores[w][1])
        best, second = [w for w in reversed(by_p) if scores[w][0] < PRODUCED_TOP_K][:2]
        unproduced = next(w for w in by_p[1:] if scores[w][0] >= PRODUCED_TOP_K)
        return best, second, by_p[0], unproduced

    def stream_edit(subject: str, outcome: str, neighbours: list[str]) -> dict[str, Any]:
        best, second, worst, unproduced = extremes(subject)
        old, new = {"kept": (best, worst), "not produced": (unproduced, worst), "preferred": (second, best)}[outcome]
        return {**edit(CAPITAL, subject, old, new), "neighbourhood": [entity(n) for n in neighbours]}

    return {
        "type": "sequential",
        "edits": [stream_edit("France", "kept", ["Switzerland", "Canada"]), stream_edit("Germany", "not produced", ["Marie"]),
                  stream_edit("Italy", "kept", []), stream_edit("Spain", "preferred", [])],
        "locality": [triple(CAPITAL, "Hamlet", extremes("Hamlet")[0]), triple(CAPITAL, "Alice", extremes("Alice")[3])],
        "held_out": ["the capital of France is Paris ."],
    }


def write_source(folder: Path, loaded: LoadedModel) -> Path:
    """A source folder with kept and dropped cases in every split that has a check, and one
    invalid record (coverage), whose words the tiny tokenizer knows."""
    words = Words(loaded)
    coverage = [
        {"triples": [triple(CAPITAL, s, "Paris")], "prerequisites": [], "type": "coverage",
         "edits": [edit(CAPITAL, s, "Paris", "Rome"), edit(CAPITAL, s, "Rome", "Berlin")]}
        for s in SUBJECTS[:4]
    ] + [{"triples": [], "type": "coverage"}]
    reverse = [
        {"rule": "P36>P1376", "triples": [triple(CAPITAL, s, "Paris"), triple(CAPITAL_OF, "Paris", s)], "prerequisites": [],
         "type": "reverse", "edits": [edit(CAPITAL, s, "Paris", "Madrid"), edit(CAPITAL_OF, "Madrid", s, "Spain")]}
        for s in SUBJECTS[:3]
    ]
    composite = [composite_record(words, s, known=i % 3 != 2) for i, s in enumerate(SUBJECTS[:8])]
    outcomes = ("kept", "kept", "not produced", "kept", "preferred")
    easy = [round_record(words, s, outcomes[i % 5], far=i % 2 == 0) for i, s in enumerate(SUBJECTS)]
    hard = [round_record(words, s, outcomes[(i + 2) % 5], far=True) for i, s in enumerate(SUBJECTS[:7])]
    folder.mkdir()
    files = {"coverage": coverage, "reverse": reverse, "composite": composite, "easy": easy, "hard": hard,
             "sequential": [stream_record(words)]}
    for split, records in files.items():
        (folder / SPLIT_FILES[split]).write_text(json.dumps(records))
    (folder / CONFLICT_EDIT.prompts_file).write_text(json.dumps(CONFLICT_PARAPHRASES))
    (folder / ROUND_EDIT.prompts_file).write_text(json.dumps(ROUND_PARAPHRASES))
    (folder / SEQUENTIAL.prompts_file).write_text(json.dumps(STREAM_PARAPHRASES))
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny matrices run fastest on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return tiny_loaded("llama")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, tiny: LoadedModel) -> Path:
    return write_source(tmp_path_factory.mktemp("build") / "source", tiny)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny: LoadedModel, source: Path) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("built") / "suite"
    return out, build_suite(tiny, str(source), out, settings=BuildSettings(batch_size=3), progress=False)


def output_files(folder: Path) -> dict[str, bytes]:
    """Every file of a build but the decision logs."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.match(DECISION_LOG.format("*"))}


def group(split: str, record: dict[str, Any]) -> str:
    if split in ("easy", "hard"):
        return record["edit"]["relation"]["id"]
    if split == "sequential":
        return "stream"
    return record.get("rule") or (record["edits"][0]["relation"]["id"] if "edits" in record else "(invalid)")


def test_batched_greedy_continuations_match_one_at_a_time(family: str):
    model, tokenizer = tiny_model(family)
    prompts = ["the capital of France is", "Paris", "the official languages of Switzerland are in the city country"]
    batched = Continuations(model, tokenizer, batch_size=8).generate(prompts)
    assert batched == [Continuations(model, tokenizer, batch_size=1)(p) for p in prompts]


def test_counts_add_up_per_split_and_relation(built: tuple[Path, dict[str, Any]], source: Path):
    _, manifest = built
    for split in manifest["splits"]:
        records = json.loads((source / SPLIT_FILES[split]).read_text())
        report = manifest["splits"][split]
        assert report["kept"] + report["dropped"] == report["source_records"] == len(records)
        expected = Counter(group(split, r) for r in records)
        assert {g: c["kept"] + c["dropped"] for g, c in report["by_relation"].items()} == expected
        assert len(report["dropped_records"]) == report["dropped"]
        assert all(d["reason"] for d in report["dropped_records"])
    assert manifest["splits"]["coverage"]["dropped_records"][0]["reason"].startswith("invalid record:")
    for split in ("composite", "easy", "hard"):
        assert manifest["splits"][split]["kept"] and manifest["splits"][split]["dropped"], split
    resplit = manifest["round_resplit"]
    kept_rounds = manifest["splits"]["easy"]["kept"] + manifest["splits"]["hard"]["kept"]
    assert resplit["easy"]["cases"] + resplit["hard"]["cases"] == kept_rounds
    assert resplit["easy"]["cases"] >= resplit["hard"]["cases"] > 0
    assert min(r["closeness"] for r in resplit["easy"]["records"]) >= resplit["threshold"]
    assert max(r["closeness"] for r in resplit["hard"]["records"]) < resplit["threshold"]


def test_round_cases_are_dropped_for_either_reason_and_scored_by_closeness(built: tuple[Path, dict[str, Any]]):
    _, manifest = built
    reasons = [d["reason"] for split in ("easy", "hard") for d in manifest["splits"][split]["dropped_records"]]
    assert any(r.startswith("round-edited object") and "not produced" in r for r in reasons), reasons
    assert any(r.startswith("target preferred") for r in reasons), reasons
    evidence = {(split, r["index"]): r for split in ("easy", "hard") for r in manifest["splits"][split]["kept_records"]}
    for split in ("easy", "hard"):
        for record in manifest["round_resplit"][split]["records"]:
            kept = evidence[record["source"], record["index"]]
            p_true, p_target = kept["p_true"], kept["p_target"]
            assert record["closeness"] == kept["closeness"]
            assert record["closeness"] == pytest.approx(math.log(p_target) - sum(map(math.log, p_true)) / len(p_true))


def test_output_loads_without_errors_and_holds_the_kept_records(built: tuple[Path, dict[str, Any]], source: Path):
    out, manifest = built
    suite = load_suite(str(out), SPLITS)
    assert not [e for entries in suite.splits.values() for e in entries if isinstance(e, DataError)]
    for split in ("coverage", "reverse", "composite"):
        assert len(suite.splits[split]) == manifest["splits"][split]["kept"]
        dropped = {d["index"] for d in manifest["splits"][split]["dropped_records"]}
        records = json.loads((source / SPLIT_FILES[split]).read_text())
        assert json.loads((out / SPLIT_FILES[split]).read_text()) == [r for i, r in enumerate(records) if i not in dropped]
    for split in ("easy", "hard"):
        assert len(suite.splits[split]) == manifest["round_resplit"][split]["cases"]
    assert (out / ROUND_EDIT.prompts_file).read_bytes() == (source / ROUND_EDIT.prompts_file).read_bytes()
    created = out.parent / "created-with-open"
    created.touch()
    assert {p.stat().st_mode for p in out.iterdir()} == {created.stat().st_mode}  # not mkstemp's 0o600


def test_a_stream_keeps_in_order_what_the_model_knows_and_the_manifest_says_why_the_rest_went(
        built: tuple[Path, dict[str, Any]], source: Path):
    out, manifest = built
    (record,) = json.loads((source / "sequential.json").read_text())
    (kept,) = json.loads((out / "sequential.json").read_text())
    (evidence,) = manifest["splits"]["sequential"]["kept_records"]
    edits = {e["fact"].split(",")[0].lstrip("("): e for e in evidence["edits"]}
    assert not edits["Germany"]["kept"] and "not produced" in edits["Germany"]["reason"]
    assert not edits["Spain"]["kept"] and edits["Spain"]["reason"].startswith("target preferred on")
    assert edits["France"]["kept"] and edits["Italy"]["kept"]
    assert [e["subject"]["label"] for e in kept["edits"]] == ["France", "Italy"]
    assert edits["Germany"]["neighbourhood"][0]["reason"] == "its edit is not kept"
    france = [n["subject"] for n in edits["France"]["neighbourhood"] if n["kept"]]
    assert [n["label"] for n in kept["edits"][0]["neighbourhood"]] == france
    assert [f["subject"]["label"] for f in kept["locality"]] == ["Hamlet"] and kept["held_out"] == record["held_out"]
    assert list(kept) == list(record) and list(kept["edits"][0]) == list(record["edits"][0])  # every key in its place
    assert (evidence["edits_kept"], evidence["locality_kept"]) == (2, 1)
    assert manifest["criteria"]["parameters"]["stream_edits"] is None and "stream" in manifest["criteria"]["knowledge_check"]


def test_stream_edits_keeps_the_first_edits_that_pass(tiny: LoadedModel, source: Path, tmp_path: Path):
    out = tmp_path / "suite"
    build_suite(tiny, str(source), out, ["sequential"], BuildSettings(batch_size=3, stream_edits=1), progress=False)
    (kept,) = json.loads((out / "sequential.json").read_text())
    assert [e["subject"]["label"] for e in kept["edits"]] == ["France"]
    assert json.loads((out / MANIFEST).read_text())["criteria"]["parameters"]["stream_edits"] == 1


def test_rerun_decides_nothing_and_changes_nothing(built, tiny, source, monkeypatch):
    out, _ = built
    before = output_files(out)
    monkeypatch.setattr(Continuations, "_generate_batch", lambda *_: pytest.fail("a decided record was generated again"))
    monkeypatch.setattr(knowledge_check, "next_token_ranks", lambda *_: pytest.fail("a decided record was ranked again"))
    build_suite(tiny, str(source), out, settings=BuildSettings(batch_size=3), progress=False)
    assert output_files(out) == before


def test_resume_after_a_limit_or_a_torn_decision_log_gives_identical_files(built, tiny, source, tmp_path):
    reference, _ = built
    out = tmp_path / "suite"
    build_suite(tiny, str(source), out, settings=BuildSettings(batch_size=3, limit=4), progress=False)
    assert json.loads((out / MANIFEST).read_text())["splits"]["easy"]["source_records"] == 4
    build_suite(tiny, str(source), out, settings=BuildSettings(batch_size=3), progress=False)
    assert output_files(out) == output_files(reference)

    log = out / DECISION_LOG.format("easy")
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-3]) + lines[-3][:10])  # lost two lines and tore one
    build_suite(tiny, str(source), out, settings=BuildSettings(batch_size=3), progress=False)
    assert output_files(out) == output_files(reference)
    assert log.read_text() == "".join(lines)


def test_another_model_in_an_existing_folder_is_an_error(built, source):
    out, _ = built
    with pytest.raises(KeditError, match=r"checkpoint-coverage\.jsonl was written with model 'tiny-llama-0', "
                                         r"this run has 'tiny-llama-1'") as info:
        build_suite(tiny_loaded("llama", seed=1), str(source), out, progress=False)
    assert "\n" not in str(info.value)


def test_resuming_with_another_top_k_is_an_error(built, tiny, source):
    out, _ = built
    with pytest.raises(KeditError, match=r"checkpoint-easy\.jsonl was written with top_k 10, this run has 3"):
        build_suite(tiny, str(source), out, splits=("easy", "hard"), settings=BuildSettings(batch_size=3, top_k=3),
                    progress=False)


def test_only_folders_of_earlier_builds_are_written_to(tiny, source):
    with pytest.raises(KeditError, match="is the source folder"):
        build_suite(tiny, str(source), source, progress=False)
    with pytest.raises(KeditError, match="holds no earlier build"):
        build_suite(tiny, str(source), source.parent, progress=False)


def test_cli_builds_and_reports_errors_in_one_line(tiny_model_dir, source, tmp_path, built, capsys):
    out = tmp_path / "suite"
    args = ["build-suite", "--model", str(tiny_model_dir), "--from", str(source), "--out", str(out)]
    assert main([*args, "--splits", "composite,easy,hard", "--batch-size", "4"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert sorted(load_suite(str(out), SPLITS).splits) == ["composite", "easy", "hard"]

    built_elsewhere, _ = built  # by the same weights under another fingerprint
    cases = {
        "another model": [*args[:-1], str(built_elsewhere)],
        "one of easy and hard": [*args, "--splits", "easy"],
        "unknown split": [*args, "--splits", "coverage,medium"],
        "missing source": [*args[:4], str(tmp_path / "nowhere"), *args[5:]],
        "bad batch size": [*args, "--batch-size", "0"],
    }
    for name, argv in cases.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err  # before the error, transformers may have drawn a progress bar
        assert err.splitlines()[-1].startswith("kedit: error: ") and "Traceback" not in err, (name, err)


def test_cli_help_states_the_defaults(capsys):
    assert main(["build-suite", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    defaults = BuildSettings()
    assert f"(default: {defaults.batch_size})" in text and f"(default: {defaults.max_new_tokens})" in text
    assert f"(default: {defaults.top_k})" in text


def test_builtin_source_is_accepted_and_a_split_kept_whole_is_copied_byte_for_byte(tiny, tmp_path):
    manifest = build_suite(tiny, "builtin", tmp_path / "suite", splits=("coverage",), progress=False)
    assert manifest["splits"]["coverage"]["dropped"] == 0
    name = SPLIT_FILES["coverage"]
    assert (tmp_path / "suite" / name).read_bytes() == (builtin_folder() / name).read_bytes()  # indented, UTF-8


def test_every_output_file_keeps_its_source_layout(built, tiny, source, tmp_path):
    out, _ = built
    name = SPLIT_FILES["reverse"]  # every record kept
    assert (out / name).read_bytes() == (source / name).read_bytes()
    assert (out / SPLIT_FILES["composite"]).read_text().startswith('[{"rule": ')  # json.dumps, as upstream

    indented = tmp_path / "indented"
    shutil.copytree(source, indented)
    records = json.loads((source / SPLIT_FILES["composite"]).read_text())
    (indented / SPLIT_FILES["composite"]).write_text(json.dumps(records, ensure_ascii=False, indent=2) + "\n")
    rebuilt = tmp_path / "rebuilt"
    build_suite(tiny, str(indented), rebuilt, ("composite",), BuildSettings(batch_size=3), progress=False)
    text = (rebuilt / SPLIT_FILES["composite"]).read_text()
    kept = json.loads((out / SPLIT_FILES["composite"]).read_text())
    assert text == json.dumps(kept, ensure_ascii=False, indent=2) + "\n"


# --------------------------------------------------------------------------- --keep-splits


@pytest.fixture(scope="module")
def kept_splits(built, tmp_path_factory, tiny, source) -> tuple[Path, dict[str, Any]]:
    """A --keep-splits build resumed from the decision logs of ``built``: the decisions are the same."""
    out = tmp_path_factory.mktemp("kept") / "suite"
    out.mkdir()
    for log in built[0].glob(DECISION_LOG.format("*")):
        shutil.copy(log, out)
    settings = BuildSettings(batch_size=3, keep_splits=True)
    return out, build_suite(tiny, str(source), out, settings=settings, progress=False)


def test_keep_splits_keeps_each_round_case_in_its_source_split(kept_splits, built, source, monkeypatch):
    out, manifest = kept_splits
    assert "round_resplit" not in manifest
    assert manifest["criteria"]["resplit"] == KEPT_SPLITS
    for split in ("easy", "hard"):
        report = manifest["splits"][split]
        assert report == built[1]["splits"][split]
        records = json.loads((source / SPLIT_FILES[split]).read_text())
        kept = [r["index"] for r in report["kept_records"]]
        assert kept and len(kept) == report["kept"]
        assert json.loads((out / SPLIT_FILES[split]).read_text()) == [records[i] for i in kept]
        assert all("closeness" in r and "p_true" in r for r in report["kept_records"])
    for split in ("coverage", "reverse", "composite"):
        assert (out / SPLIT_FILES[split]).read_bytes() == (built[0] / SPLIT_FILES[split]).read_bytes()


def test_keep_splits_builds_easy_or_hard_alone(kept_splits, tiny, source, tmp_path):
    out, manifest = kept_splits
    alone = tmp_path / "hard"
    alone.mkdir()
    shutil.copy(out / DECISION_LOG.format("hard"), alone)
    build_suite(tiny, str(source), alone, splits=("hard",), settings=BuildSettings(batch_size=3, keep_splits=True),
                progress=False)
    assert (alone / SPLIT_FILES["hard"]).read_bytes() == (out / SPLIT_FILES["hard"]).read_bytes()
    assert not (alone / SPLIT_FILES["easy"]).exists()


def test_a_folder_with_a_build_manifest_and_no_decision_logs_is_an_earlier_build(kept_splits, tiny, source, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(kept_splits[0], out, ignore=shutil.ignore_patterns(DECISION_LOG.format("*")))
    (out / "README.md").write_text("kept")
    settings = BuildSettings(batch_size=3, keep_splits=True)
    build_suite(tiny, str(source), out, splits=("coverage",), settings=settings, progress=False)
    assert (out / "README.md").read_text() == "kept"
    (out / MANIFEST).write_text(json.dumps({"generator": "something else"}))
    for log in out.glob(DECISION_LOG.format("*")):
        log.unlink()
    with pytest.raises(KeditError, match=rf"holds no earlier build \(no checkpoint-\*\.jsonl, no {MANIFEST} by kedit"):
        build_suite(tiny, str(source), out, splits=("coverage",), settings=settings, progress=False)


def test_cli_keep_splits(tiny_model_dir, source, tmp_path, capsys):
    out = tmp_path / "suite"
    args = ["build-suite", "--model", str(tiny_model_dir), "--from", str(source), "--out", str(out)]
    assert main([*args, "--splits", "easy", "--keep-splits", "--batch-size", "3"]) == 0
    printed = capsys.readouterr().out
    assert "easy " in printed and "re-split" not in printed
    assert json.loads((out / MANIFEST).read_text())["criteria"]["resplit"] == KEPT_SPLITS

"""``kedit check-data``, ``kedit compose-stream`` and ``kedit build-suite``: every problem of a
dataset, a long stream composed from a dataset's edits, and a source's cases re-filtered for one
model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pytest_kedit.cli.arguments import int_at_least
from pytest_kedit.dataset import check as data_check
from pytest_kedit.dataset import input_length
from pytest_kedit.dataset.sources import resolve_source
from pytest_kedit.suite_build.stream_composition import LOCALITY, compose_from_folder


def add_check_data(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check-data",
        help="list every problem of a dataset (schema, prompts, labels, duplicates)",
        description="Check a dataset and print one line per finding, FILE:record N: field: message, then "
                    "a count per kind and file. Exit status: 0 no errors (warnings: a numeric-only label, a "
                    "duplicate case), 1 errors, 2 usage error.",
    )
    parser.add_argument("path", metavar="PATH",
                        help="a folder in the upstream layout, one of its files, or upstream:GPT2-XL / upstream:GPT-J")
    parser.add_argument("--strict", action="store_true",
                        help="also hold the data to the built-in suites' rules (the upstream keys in order, the "
                             "relations between triples and edits, 10 paraphrases per relation, every split with "
                             "at least 12 cases) and count warnings as errors")
    parser.add_argument("--model", default=None, metavar="MODEL",
                        help="count the length of every model input (a prompt with its subject, then an object) with "
                             "MODEL's tokenizer and report those longer than MODEL's context (embedded alias, local "
                             "directory or Hugging Face id; reads the tokenizer, not the weights)")
    parser.add_argument("--max-tokens", type=int_at_least(1), default=None, metavar="N",
                        help="report model inputs longer than N tokens (default with --model: its context); "
                             "without --model, N bounds the UTF-8 bytes of an input, which no byte-level "
                             "tokenizer's tokens exceed")
    parser.set_defaults(handler=_check_data)


def _check_data(args: argparse.Namespace) -> int:
    length = None
    if args.model is not None:
        length = input_length.model_limit(args.model, args.max_tokens)
    elif args.max_tokens is not None:
        length = input_length.byte_limit(args.max_tokens)
    findings = data_check.check_data(args.path, strict=args.strict, length=length)
    for finding in findings:
        print(finding)
    print(data_check.summarize(findings) or f"no findings in {args.path}")
    return 1 if data_check.failed(findings) else 0


def add_build_suite(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "build-suite",
        help="re-filter a dataset for one model, as the paper filtered its data per model",
        description="Keep the cases of SOURCE whose facts MODEL knows (composite: the tied fact; easy/hard: "
                    "the round-edited object, produced and preferred to the target; a stream: the edits, neighbours "
                    "and locality facts it knows), copy coverage and reverse, "
                    "split easy/hard again by how close the target is to the true objects on MODEL (unless "
                    "--keep-splits), and write the suite and manifest.json to OUT (see kedit docs data-build). "
                    "Resumable: run the same command again after an interruption.",
    )
    parser.add_argument("--model", required=True, metavar="MODEL", help="embedded alias, local directory or Hugging Face id")
    parser.add_argument("--from", dest="source", required=True, metavar="SOURCE",
                        help="a folder in the upstream layout, upstream:GPT2-XL / upstream:GPT-J, or builtin")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="the folder to write the suite to")
    parser.add_argument("--splits", default=None, metavar="SPLITS",
                        help="comma-separated splits (default: every split whose file SOURCE has)")
    parser.add_argument("--device", default="auto", metavar="DEVICE", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--dtype", default="auto", metavar="DTYPE", help="auto (float32), float16 or bfloat16 (default: auto)")
    parser.add_argument("--batch-size", type=int_at_least(1), default=argparse.SUPPRESS, metavar="N",
                        help="cases decided together, prompts generated together (default: 32)")
    parser.add_argument("--max-new-tokens", type=int_at_least(1), default=argparse.SUPPRESS, metavar="N",
                        help="tokens of each greedy continuation (default: 12)")
    parser.add_argument("--top-k", type=int_at_least(1), default=argparse.SUPPRESS, metavar="K",
                        help="a RoundEdit object is produced when its first token ranks among the top K next "
                             "tokens (default: 10)")
    parser.add_argument("--limit", type=int_at_least(1), default=argparse.SUPPRESS, metavar="N",
                        help="only the first N records of each split (a trial run; resumable without it)")
    parser.add_argument("--stream-edits", type=int_at_least(1), default=argparse.SUPPRESS, metavar="N",
                        help="keep at most the first N edits of each stream that pass the check (default: all)")
    parser.add_argument("--keep-splits", action="store_true",
                        help="keep each kept easy/hard case in its source split instead of splitting them again "
                             "by closeness: for hand-chosen cases, such as the built-in suites'")
    parser.set_defaults(handler=_build_suite)


def add_compose_stream(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compose-stream",
        help="compose a long stream of edits from a dataset's ConflictEdit and RoundEdit files",
        description="Write OUT/sequential.json and OUT/sequential_prompts.json: one stream of the first edit of "
        "every valid record of SOURCE (one per subject and relation, shuffled with --seed), each with up to two "
        "neighbourhood facts (other subjects with its relation and true object), --locality facts no edit "
        "changes, and the built-in stream's held-out text. Then keep what a model knows with kedit build-suite "
        "--from OUT --splits sequential (see kedit docs data).",
    )
    parser.add_argument(
        "--from", dest="source", required=True, metavar="SOURCE", help="a folder in the upstream layout, upstream:GPT2-XL / upstream:GPT-J, or builtin"
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="the folder to write the stream to")
    parser.add_argument("--seed", type=int, default=0, metavar="SEED", help="the order of the edits and the choice of locality facts (default: 0)")
    parser.add_argument("--edits", type=int_at_least(1), default=None, metavar="N", help="at most N edits (default: every one)")
    parser.add_argument("--locality", type=int_at_least(1), default=LOCALITY, metavar="N", help=f"locality facts (default: {LOCALITY})")
    parser.set_defaults(handler=_compose_stream)


def _compose_stream(args: argparse.Namespace) -> int:
    folder = resolve_source(None if args.source == "builtin" else args.source, option="--from")
    record = compose_from_folder(folder, args.out, args.seed, args.edits, args.locality)
    neighbours = sum(len(edit["neighbourhood"]) for edit in record["edits"])
    print(f"wrote {args.out}: 1 stream of {len(record['edits'])} edits, {neighbours} neighbourhood facts, {len(record['locality'])} locality facts")
    return 0


def _build_suite(args: argparse.Namespace) -> int:
    # Imported here: torch and transformers take seconds to import, which the other commands do not need.
    from pytest_kedit.model.loading import load_model
    from pytest_kedit.suite_build.builder import BuildSettings, build_suite, check_request
    from pytest_kedit.suite_build.manifest import MANIFEST

    splits = None if args.splits is None else tuple(s.strip() for s in args.splits.split(",") if s.strip())
    check_request(args.source, args.out, splits, args.keep_splits)
    names = ("batch_size", "max_new_tokens", "top_k", "limit", "stream_edits")
    options = {name: getattr(args, name) for name in names if hasattr(args, name)}
    settings = BuildSettings(**options, keep_splits=args.keep_splits)
    try:
        loaded = load_model(args.model, device=args.device, dtype=args.dtype)
        manifest = build_suite(loaded, args.source, args.out, splits, settings)
    except KeyboardInterrupt:
        print(f"kedit: interrupted; decisions so far are kept in {args.out}: run the same command to resume",
              file=sys.stderr)
        return 130
    width = max(map(len, manifest["splits"]), default=0)
    for split, counts in manifest["splits"].items():
        print(f"{split:{width}s} kept {counts['kept']:5d}, dropped {counts['dropped']:5d} of {counts['source_records']:5d}")
    if "round_resplit" in manifest:
        resplit = manifest["round_resplit"]
        print(f"re-split at closeness {resplit['threshold']}: easy {resplit['easy']['cases']}, "
              f"hard {resplit['hard']['cases']}")
    print(f"wrote {args.out} (criteria and every dropped record: {args.out / MANIFEST})")
    return 0

"""JSON-lines logs read back after a kill: a torn last line is left out, any other bad line is an
error naming the file and the line."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_kedit.errors import KeditError
from pytest_kedit.storage.jsonl import JsonLinesError, drop_torn_line, read_json_lines

values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=6),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                      max_leaves=6)


def written(items: list[object]) -> bytes:
    """The log a writer leaves: one JSON value and its newline per item (non-ASCII kept, as the
    decision log writes it)."""
    return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items).encode("utf-8")


@given(st.lists(values, min_size=1, max_size=6), st.data())
def test_a_log_cut_anywhere_reads_back_as_the_values_whose_newline_was_written(items: list[object], data: st.DataObject) -> None:
    raw = written(items)
    cut = data.draw(st.integers(0, len(raw)))
    complete = raw[:cut].count(b"\n")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "log.jsonl"
        path.write_bytes(raw[:cut])  # a cut inside a character of the torn line too
        read = read_json_lines(path)
        assert read == list(enumerate(items[:complete], start=1))
        drop_torn_line(path)
        with path.open("a", encoding="utf-8") as file:
            file.write(json.dumps("next") + "\n")
        assert [value for _, value in read_json_lines(path)] == [*items[:complete], "next"]


def test_a_torn_last_line_is_skipped_and_blank_lines_keep_their_numbers(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"a": 1}\n\n[2]\n{"b": 3')
    assert read_json_lines(path) == [(1, {"a": 1}), (3, [2])]


def test_a_bad_line_in_the_middle_is_an_error_naming_the_file_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"a": 1}\n{"b": \n[3]\n')
    with pytest.raises(JsonLinesError) as caught:
        read_json_lines(path)
    assert isinstance(caught.value, KeditError) and (caught.value.path, caught.value.line) == (str(path), 2)
    assert str(caught.value).startswith(f"{path}, line 2: not valid JSON: ")


def test_a_bad_last_line_with_its_newline_is_complete_and_so_an_error(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"a": 1}\n{"b": \n')
    with pytest.raises(JsonLinesError, match=r"log\.jsonl, line 2: "):
        read_json_lines(path)


def test_dropping_the_torn_line_keeps_every_complete_one(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b"')
    drop_torn_line(path)
    assert path.read_bytes() == b'{"a": 1}\n'
    drop_torn_line(path)
    assert path.read_bytes() == b'{"a": 1}\n'
    path.write_bytes(b'{"b"')
    drop_torn_line(path)
    assert path.read_bytes() == b""

"""``--kedit-data=upstream:NAME``: download, sha256 check and cache, against a local mirror of GitHub."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_datasets import UPSTREAM, needs_upstream

from pytest_kedit.benchmark.registry import PAPER_BENCHMARKS, splits_of
from pytest_kedit.dataset import upstream
from pytest_kedit.dataset.check import check_data
from pytest_kedit.dataset.sources import load_suite
from pytest_kedit.errors import ConfigError, DataError
from pytest_kedit.storage.cache import ENV_CACHE_DIR

#: The splits of the published data: the paper's five (it has no stream)
SPLITS = tuple(split for benchmark in PAPER_BENCHMARKS for split in splits_of(benchmark))
SUITES = Path(__file__).resolve().parents[1] / "suites"
URL_PATH = f"/{upstream.REPOSITORY}/{upstream.COMMIT}/data/"


@dataclass
class Mirror:
    """What the local server saw and serves: paths below ``data/`` like ``GPT2-XL/easy.json``."""

    url: str
    requests: list[str] = field(default_factory=list)
    #: served instead of the file at that path
    replaced: dict[str, bytes] = field(default_factory=dict)


def _handler(mirror: Mirror) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        """Serves UPSTREAM under GitHub's raw URL path for the pinned commit; anything else is 404."""

        def do_GET(self) -> None:
            relative = self.path.removeprefix(URL_PATH)
            file = UPSTREAM / relative
            if not self.path.startswith(URL_PATH) or ".." in relative or not file.is_file():
                self.send_error(404)
                return
            mirror.requests.append(relative)
            body = mirror.replaced.get(relative, file.read_bytes())
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Mirror]:
    """A local HTTP mirror of raw.githubusercontent.com as KEDIT_UPSTREAM_URL, and an empty cache."""
    mirror = Mirror(url="")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(mirror))
    mirror.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(upstream.ENV_UPSTREAM_URL, mirror.url)
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "cache"))
    yield mirror
    server.shutdown()
    server.server_close()
    thread.join()


def cached(tmp_path: Path, name: str) -> Path:
    return tmp_path / "cache" / "upstream" / upstream.COMMIT / name


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.slow
@needs_upstream
@pytest.mark.parametrize("name, counts", [("GPT2-XL", (2500, 2500, 2000, 2500, 2500)), ("GPT-J", (2500, 2500, 2500, 2500, 2500))])
def test_upstream_loads_the_published_cases_like_the_shared_folder(mirror: Mirror, tmp_path: Path, name, counts):
    downloaded = load_suite(f"upstream:{name}", SPLITS)
    local = load_suite(str(UPSTREAM / name), SPLITS)
    assert tuple(len(downloaded.splits[s]) for s in SPLITS) == counts
    assert not [e for entries in downloaded.splits.values() for e in entries if isinstance(e, DataError)]
    assert downloaded.fingerprint == local.fingerprint
    assert downloaded.splits == local.splits
    assert downloaded.source == f"upstream:{name}@{upstream.COMMIT}"
    assert sorted(mirror.requests) == sorted(f"{name}/{file}" for file in upstream.SHA256[name])
    assert sorted(p.name for p in cached(tmp_path, name).iterdir()) == sorted(upstream.SHA256[name])


@needs_upstream
def test_verified_files_are_not_downloaded_again_and_a_damaged_one_is_replaced(mirror: Mirror, tmp_path: Path):
    folder = upstream.fetch("upstream:GPT2-XL")
    mirror.requests.clear()
    assert upstream.fetch("upstream:gpt2-xl") == folder
    assert mirror.requests == []
    (folder / "hard.json").write_text("[]")
    upstream.fetch("upstream:GPT2-XL")
    assert mirror.requests == ["GPT2-XL/hard.json"]
    assert (folder / "hard.json").read_bytes() == (UPSTREAM / "GPT2-XL" / "hard.json").read_bytes()


@needs_upstream
def test_concurrent_resolves_download_each_file_once(mirror: Mirror):
    folders: list[Path] = []
    threads = [threading.Thread(target=lambda: folders.append(upstream.fetch("upstream:GPT-J"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(folders) == 4 and len(set(folders)) == 1
    assert sorted(mirror.requests) == sorted(f"GPT-J/{file}" for file in upstream.SHA256["GPT-J"])


@needs_upstream
def test_a_corrupted_download_names_file_and_digests_and_is_not_kept(mirror: Mirror, tmp_path: Path):
    bad = b'[{"edit": "truncated"}]'
    mirror.replaced["GPT2-XL/easy.json"] = bad
    with pytest.raises(ConfigError) as error:
        load_suite("upstream:GPT2-XL", SPLITS)
    message = str(error.value)
    assert f"easy.json of upstream:GPT2-XL downloaded from {mirror.url}{URL_PATH}GPT2-XL/easy.json" in message
    assert f"has sha256 {hashlib.sha256(bad).hexdigest()}, expected {upstream.SHA256['GPT2-XL']['easy.json']}" in message
    assert "\n" not in message
    folder = cached(tmp_path, "GPT2-XL")
    assert not (folder / "easy.json").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_an_unreachable_server_is_one_line_naming_the_url_and_the_alternatives(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    url = closed_port_url()
    monkeypatch.setenv(upstream.ENV_UPSTREAM_URL, url)
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "cache"))
    with pytest.raises(ConfigError) as error:
        load_suite("upstream:GPT2-XL", SPLITS)
    assert str(error.value) == (
        f"could not download upstream:GPT2-XL from {url}{URL_PATH}GPT2-XL/coverage_edit.json (Connection refused); "
        "use --kedit-data=PATH with a folder in the upstream layout, or no --kedit-data for the built-in suites"
    )


def test_a_missing_file_on_the_server_reports_the_http_status(mirror: Mirror, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(upstream.ENV_UPSTREAM_URL, f"{mirror.url}/elsewhere")
    with pytest.raises(ConfigError, match=r"could not download upstream:GPT-J from .*/elsewhere/.* \(HTTP 404 Not Found\)"):
        upstream.fetch("upstream:GPT-J")


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"^unknown upstream dataset 'upstream:FOO'; known: upstream:GPT2-XL, upstream:GPT-J$"):
        load_suite("upstream:FOO", SPLITS)


@pytest.mark.slow
@needs_upstream
def test_check_data_on_upstream_finds_what_it_finds_in_the_shared_folder(mirror: Mirror):
    def where(findings):
        return [(Path(f.file).name, f.record, f.field, f.kind) for f in findings]

    assert where(check_data("upstream:GPT-J")) == where(check_data(str(UPSTREAM / "GPT-J")))


@pytest.mark.slow
def test_the_plugin_reports_an_offline_download_as_one_line_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    pytester.makepyfile(test_conflict_edit=(SUITES / "test_conflict_edit.py").read_text())
    monkeypatch.setenv(upstream.ENV_UPSTREAM_URL, closed_port_url())
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "cache"))
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--kedit-data=upstream:GPT2-XL", "--collect-only")
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    (line,) = [line for line in output.splitlines() if "could not download" in line]
    assert line.startswith("ERROR: kedit: could not download upstream:GPT2-XL from http://127.0.0.1:")
    assert line.endswith("(Connection refused); use --kedit-data=PATH with a folder in the upstream layout, "
                         "or no --kedit-data for the built-in suites")
    assert "Traceback" not in output

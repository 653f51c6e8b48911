"""The checks made before any model loads."""

from __future__ import annotations

import pytest

from pytest_kedit.errors import ConfigError
from pytest_kedit.run.preflight import check_html_file, check_model, check_report_folder


def test_a_model_path_that_does_not_exist_is_one_line_naming_the_folder(tmp_path):
    for name in (str(tmp_path / "missing"), "../missing-model"):
        with pytest.raises(ConfigError, match=r"--kedit-model: .* is not an embedded alias .*and no folder .* exists"):
            check_model(name)


def test_an_html_page_whose_folder_cannot_be_made_or_that_is_a_folder_is_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=rf"^--kedit-html: cannot create {blocker}/pages: {blocker} is a file$"):
        check_html_file(blocker / "pages" / "report.html")
    with pytest.raises(ConfigError, match=rf"^--kedit-html: {tmp_path} is a folder; name the page's file"):
        check_html_file(tmp_path)
    check_html_file(tmp_path / "new" / "folders" / "report.html")  # made when the page is written
    assert not (tmp_path / "new").exists()


def test_a_report_folder_under_a_file_is_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=rf"^--kedit-report: {blocker} is a file, not a folder$"):
        check_report_folder(blocker)
    with pytest.raises(ConfigError, match=rf"^--kedit-report: cannot create {blocker}/run: {blocker} is a file$"):
        check_report_folder(blocker / "run")
    check_report_folder(tmp_path / "new" / "run")

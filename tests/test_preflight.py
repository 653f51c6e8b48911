"""The checks made before any model loads."""

from __future__ import annotations

import pytest

from pytest_kedit.errors import ConfigError
from pytest_kedit.run.preflight import check_model


def test_a_model_path_that_does_not_exist_is_one_line_naming_the_folder(tmp_path):
    for name in (str(tmp_path / "missing"), "../missing-model"):
        with pytest.raises(ConfigError, match=r"--kedit-model: .* is not an embedded alias .*and no folder .* exists"):
            check_model(name)

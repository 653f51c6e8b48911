"""``python -m pytest_kedit``: the ``kedit`` command."""

from pytest_kedit.cli.main import main

raise SystemExit(main())

"""The baselines of the built-in suites on the embedded model, installed as ``pytest_kedit.baselines``:
``kedit init`` copies them into a repository's ``.kedit/baselines/``."""

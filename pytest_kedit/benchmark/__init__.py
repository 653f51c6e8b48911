"""What is measured, and nothing else: the case types, the registry of splits and metrics, each
split's plan, the ``--kedit-protocol`` choices, scoring, the metric formulas and thresholds.

Pure: no torch, no model, no file; it imports nothing of the package but :mod:`pytest_kedit.errors`
(the import contracts in pyproject.toml hold it to that), so all of it is tested with hypothesis alone.
"""

"""The benchmark's suites, one test module per benchmark: ``pytest --pyargs pytest_kedit.suites``
runs every case from an installed package; ``kedit init`` writes files into a method's repository
that import these tests (``suites/test_*.py``). The cases come from the plugin's parametrized
fixtures (``conflict_case``, ``round_case``, ``stream_case``), so the modules hold one test each."""

"""The built-in suites authored by pytest-kedit (upstream schema); see README.md here."""

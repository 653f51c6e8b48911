"""The documentation, installed as ``pytest_kedit.docs``: ``kedit docs [TOPIC]`` prints a page."""

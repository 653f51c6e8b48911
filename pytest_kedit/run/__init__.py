"""A benchmark run inside pytest: the options, which tests are cases, the checks made before any
model loads, the worker that runs a case (harness: edit, probe, restore) and the controller that
collects it, resuming, the worker-to-controller transport, JUnit properties, pytest-html's column
and the end-of-session summary; the machine's faults a session meets: SIGTERM taken as Ctrl-C,
the lock of its report folder, the lines a damaged cache entry leaves for the user.
"""

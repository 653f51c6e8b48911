"""Judging runs against runs, torch-free: the baseline file, a case's verdict against it, aggregate
gates, gating a run (the plugin's session and ``kedit gate``), paired comparison of two runs
(``kedit compare``) and GitHub's job summary.
"""

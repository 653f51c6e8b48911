"""Torch and the model, knowing nothing of editing: loading (embedded aliases, local folders, hub
ids), the per-family module map, devices, the one tool that reaches into a model
(:mod:`~pytest_kedit.model.tracing`), the probe, and θ's remembered probabilities.
"""

"""Torch and the model, knowing nothing of editing: loading (embedded aliases, local folders, hub
ids), the per-family module map, devices, the one tool that reaches into a model
(:mod:`~pytest_kedit.model.tracing`), the probe, θ's remembered probabilities, and what a stream of
edits costs a model: the perplexity of texts and the relative update norms of its weights.
"""

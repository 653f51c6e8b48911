"""``kedit build-suite``: a source's cases re-filtered for one model by what the model knows, with
a resumable decision log and a manifest of every decision.
"""

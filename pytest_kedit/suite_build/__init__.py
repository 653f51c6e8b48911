"""``kedit build-suite``: a source's cases re-filtered for one model by what the model knows, with
a resumable decision log and a manifest of every decision; ``kedit compose-stream``: the
candidate stream it filters, composed from a dataset's edits.
"""

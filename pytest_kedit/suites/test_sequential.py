"""Sequential editing (Table 3): a stream of edits applied to one model without restoring in between.

stream     e_1, ..., e_N applied in order, in batches of B; the model measured every K edits
           (--kedit-sequential=N, --kedit-sequential-batch=B, --kedit-sequential-every=K)

A robust editor keeps every edit so far (ES, GS; retention of those that took when they were made),
leaves the neighbours of the edited facts and the facts it did not edit alone (specificity,
locality), keeps the held-out text as fluent as before (PPL ratio) and never collapses. The edits
are scored both right after their batch (ES (immediate)) and on the model after the stream
(ES (final)), --kedit-sequential-scheme chooses.
"""

from pytest_kedit import assert_thresholds


def test_sequential_stream(stream_case, kedit_run):
    outcome = kedit_run(stream_case)
    assert_thresholds(outcome)

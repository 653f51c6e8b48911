"""RoundEdit (Table 2): an edit and its undo, e1 = (s, r, o1 -> o*) then e2 = (s, r, o* -> o1).

(s, r) has several true objects Obj. After the round trip a robust editor has restored o1 (Succ)
and left the other true objects as likely as before: no distortion of their distribution (D),
none of them ignored (IR), no case with most of them lost (FR). EASY picks o* close to Obj,
HARD far from it. With Multi-Label Edit, e2 writes every object of Obj in one batch.
"""

from pytest_kedit import assert_thresholds


def test_round_edit(round_case, kedit_run):
    outcome = kedit_run(round_case)
    assert_thresholds(outcome)

"""ConflictEdit (Table 1): two logically linked edits, e1 then e2, on one model.

coverage   e1 = (s, r, o1 -> o2)    e2 = (s, r, o2 -> o3)
reverse    e1 = (s1, r1, o1 -> o2)  e2 = (o2, r2, s1 -> s2)       r2 the reverse of r1
composite  e1 = (s1, r1, o -> o2)   e2 = (s2, r2, o -> o3)        tied fact k_f = (s2, r, s1)

After both edits a robust editor makes the new fact k_n more likely than the old one k_o
(CS_exp, CS_imp), wipes k_o out (CM) and keeps the tied fact (TFD).
"""

from pytest_kedit import assert_thresholds


def test_conflict_edit(conflict_case, kedit_run):
    outcome = kedit_run(conflict_case)
    assert_thresholds(outcome)

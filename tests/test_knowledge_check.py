"""The text matching behind the knowledge checks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pytest_kedit.suite_build.knowledge_check import contains, inside_subject

WORD = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=8)


def test_contains_matches_whole_words_only():
    assert contains("It was made for advertising.", "advertising")
    assert not contains("It was made for advertising.", "DV")
    assert contains("The answer is New York.", "new york")
    assert not contains("The answer is New Yorker magazine", "New York")
    assert contains("one of (C++) and Go", "C++")


def test_a_subject_containing_the_object_is_trivial_even_inside_a_word():
    assert inside_subject("Somali", "Somalia")
    assert inside_subject("paris", "Paris Hilton")
    assert not inside_subject("French", "Chad")


@given(st.lists(WORD, max_size=4), WORD, st.lists(WORD, max_size=4))
def test_a_label_between_spaces_or_punctuation_is_found_in_any_case(before, label, after):
    text = " ".join([*before, label + ".", *after])
    assert contains(text, label)
    assert contains(text.upper(), label.lower())


@given(WORD, WORD)
def test_a_label_glued_to_a_letter_or_digit_is_not_found(prefix, label):
    # prefix + label is a single word, so the only whole-word match would be all of it.
    assert not contains(prefix + label, label)
    assert not contains(label + prefix, label)

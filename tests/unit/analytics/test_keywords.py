"""KeywordSpotter: whole words, case and punctuation blind, phrases, trailing-* prefixes, configuration order."""

from __future__ import annotations

import pytest

from siprec.analytics.keywords import KeywordSpotter, words_of


def test_words_are_case_folded_and_punctuation_dropped() -> None:
    assert words_of("I'm sorry, can't you REFUND it?! 'Now'") == ["i'm", "sorry", "can't", "you", "refund", "it", "now"]


@pytest.mark.parametrize(
    ("keywords", "text", "found"),
    [
        (("refund",), "I still haven't received my Refund.", ("refund",)),
        (("refund",), "Refunds take five days", ()),  # whole words only
        (("refund*",), "Refunds take five days", ("refund*",)),
        (("refund*",), "it was refunded", ("refund*",)),
        (("card number",), "my card number is four one one", ("card number",)),
        (("card number",), "my card, number one", ("card number",)),  # punctuation is not a word
        (("card number",), "the number on my card", ()),  # a phrase is its words in a row
        (("cancel", "refund"), "Refund it or I cancel", ("cancel", "refund")),  # configuration order
        (("refund", "refund", " refund "), "refund refund", ("refund",)),  # each once
        (("", "*", "!!"), "anything", ()),  # nothing to look for
        (("don't",), "Please don't share card details", ("don't",)),
        (("Straße",), "die STRASSE ist lang", ("Straße",)),  # casefold: ß == ss
    ],
)
def test_find(keywords: tuple[str, ...], text: str, found: tuple[str, ...]) -> None:
    assert KeywordSpotter(keywords).find(text) == found


def test_no_keywords_finds_nothing() -> None:
    assert KeywordSpotter().find("refund") == ()

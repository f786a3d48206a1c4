"""`KeywordSpotter`: which configured keywords or phrases a transcript contains (sans-I/O).

Matching is on whole words, case-insensitive and blind to punctuation: "refund" matches "Refund," but not
"refunds"; a phrase ("cancel my account") matches its words in a row. A keyword ending in `*` matches any word
starting with it ("refund*" matches "refunds" and "refunded"). Speech to text writes numbers and names as it
hears them, so configure the words the way the transcripts spell them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["KeywordSpotter", "words_of"]

_WORD = re.compile(r"[\w']+")


def words_of(text: str) -> list[str]:
    """The text's words, case-folded, apostrophes kept inside words ("don't"), other punctuation dropped."""
    return [w.strip("'") for w in _WORD.findall(text.casefold()) if w.strip("'")]


@dataclass(frozen=True)
class _Pattern:
    keyword: str  # as configured: the name events carry
    words: tuple[str, ...]
    prefix: bool  # the last word is a prefix (configured with a trailing *)

    def found_in(self, words: list[str]) -> bool:
        n = len(self.words)
        for i in range(len(words) - n + 1):
            if words[i : i + n - 1] != list(self.words[:-1]):
                continue
            last = words[i + n - 1]
            if last == self.words[-1] or (self.prefix and last.startswith(self.words[-1])):
                return True
        return False


@dataclass(frozen=True)
class KeywordSpotter:
    keywords: tuple[str, ...] = ()
    _patterns: tuple[_Pattern, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        patterns = []
        for keyword in dict.fromkeys(k.strip() for k in self.keywords):
            prefix = keyword.endswith("*")
            words = tuple(words_of(keyword.rstrip("*")))
            if words:  # "" or "*" or only punctuation: nothing to look for
                patterns.append(_Pattern(keyword, words, prefix))
        object.__setattr__(self, "_patterns", tuple(patterns))

    def find(self, text: str) -> tuple[str, ...]:
        """The configured keywords in `text`, each once, in configuration order."""
        return self.find_in(words_of(text)) if self._patterns else ()

    def find_in(self, words: list[str]) -> tuple[str, ...]:
        """The same for a text already split by words_of()."""
        return tuple(p.keyword for p in self._patterns if p.found_in(words))

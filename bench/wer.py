"""Word error rate against the fixture scripts, normalised as in ../shared/fixtures/audio/README.md (asr_check).
The one scorer of the STT benchmarks and tests (bench/stt_*.py, tests/plugins/*, tests/integration/*stt*).

Both texts: lower case; ',' or '.' between two digits dropped ("4,111" -> "4111"); '-' -> space; every digit its own
word ("58317" and "5-8-3-1-7" -> "five eight three one seven": valid because every number in the script is spoken
digit by digit); "ok" -> "okay"; all punctuation dropped except apostrophes inside words (contractions compare as
written). WER = (substitutions + deletions + insertions) / reference words, by word-level Levenshtein distance.
"""

from __future__ import annotations

import re

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def normalise(text: str) -> list[str]:
    text = re.sub(r"(?<=\d)[,.](?=\d)", "", text.lower()).replace("-", " ")
    text = re.sub(r"\d", lambda m: f" {DIGITS[int(m.group())]} ", text)
    text = re.sub(r"[^a-z' ]+", " ", text)
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)
    return ["okay" if w == "ok" else w for w in text.split()]


def word_edits(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        diag, row[0] = row[0], i
        for j in range(1, len(hyp) + 1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (ref[i - 1] != hyp[j - 1]))
    return row[-1]


def wer(ref: str, hyp: str) -> float:
    words = normalise(ref)
    return word_edits(words, normalise(hyp)) / max(1, len(words))

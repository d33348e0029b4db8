"""Quality metrics between a prediction and its ground truth (computed for real, no simulation).

* ``exact_match``: the two texts are equal once surrounding whitespace is stripped;
* ``char_error_rate``: character-level Levenshtein distance / length of the ground truth
  (0 = identical; can exceed 1 when the prediction is much longer);
* ``length_ratio``: characters of the prediction / characters of the ground truth;
* ``word_overlap``: the share of the ground truth's words (as a multiset, case-folded) that the
  prediction contains, in 0..1.
"""

from __future__ import annotations

import re
from collections import Counter

_WORD = re.compile(r"\w+", re.UNICODE)

#: texts longer than this are compared on their first MAX_CHARS characters (keeps the O(n·m)
#: edit distance cheap; training targets are short in practice).
MAX_CHARS = 4000


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions) between two strings."""
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        append = current.append
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost))
        previous = current
    return previous[-1]


def words(text: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(text)]


def exact_match(prediction: str, truth: str) -> bool:
    return prediction.strip() == truth.strip()


def char_error_rate(prediction: str, truth: str) -> float:
    pred, gold = prediction.strip()[:MAX_CHARS], truth.strip()[:MAX_CHARS]
    if not gold:
        return 0.0 if not pred else 1.0
    return levenshtein(pred, gold) / len(gold)


def length_ratio(prediction: str, truth: str) -> float:
    gold = len(truth.strip())
    if gold == 0:
        return 1.0 if not prediction.strip() else float(len(prediction.strip()))
    return len(prediction.strip()) / gold


def word_overlap(prediction: str, truth: str) -> float:
    gold = Counter(words(truth))
    total = sum(gold.values())
    if total == 0:
        return 1.0 if not words(prediction) else 0.0
    pred = Counter(words(prediction))
    return sum(min(count, pred[w]) for w, count in gold.items()) / total


def score(prediction: str, truth: str) -> dict[str, float | bool]:
    """All four metrics, rounded for display stability."""
    return {
        "exact_match": exact_match(prediction, truth),
        "char_error_rate": round(char_error_rate(prediction, truth), 6),
        "length_ratio": round(length_ratio(prediction, truth), 6),
        "word_overlap": round(word_overlap(prediction, truth), 6),
    }

"""Turning model text into answers and comparing them with the references.

Each rule follows the published protocol of its benchmark (see docs/eval.md): SQuAD-style
normalisation for TriviaQA, "The answer is N" then last-number extraction for GSM8K, and the
Minerva final-answer normalisation for MATH.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence

# ---------------------------------------------------------------------------------------------
# generic


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut `text` at the earliest stop string (generation engines may overshoot by a token)."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_text(text: str) -> str:
    """SQuAD/TriviaQA normalisation: lowercase, drop punctuation and articles, squeeze spaces."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())


def exact_match(prediction: str, references: Iterable[str]) -> bool:
    """True when the normalised prediction equals any normalised reference."""
    pred = normalize_text(prediction)
    return any(pred == normalize_text(r) for r in references)



_ROUGE_TOKEN = re.compile(r"[a-z0-9]+")


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 (longest common subsequence of words), tokenised as Google's `rouge-score`
    does without stemming (lower case, runs of [a-z0-9]), so scores compare with published ones."""
    a, b = _ROUGE_TOKEN.findall(candidate.lower()), _ROUGE_TOKEN.findall(reference.lower())
    if not a or not b:
        return 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, r = lcs / len(a), lcs / len(b)
    return 2 * p * r / (p + r)

# ---------------------------------------------------------------------------------------------
# numbers (GSM8K)

_STRICT_ANSWER = re.compile(r"(?:the answer is|####)\s*\$?\s*(-?[0-9][0-9,]*(?:\.[0-9]+)?)", re.IGNORECASE)
_ANY_NUMBER = re.compile(r"-?[0-9][0-9,]*(?:\.[0-9]+)?")


def canonical_number(text: str) -> str | None:
    """'1,000.00' -> '1000'; '$18.' -> '18'; None when `text` is not a number."""
    cleaned = text.strip().replace(",", "").replace("$", "").rstrip(".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return str(int(value)) if value.is_integer() else repr(value)


def extract_number(completion: str) -> str | None:
    """The final numeric answer of a chain of thought.

    First "The answer is N" (the format the few-shot exemplars teach); failing that, the last
    number in the text. Returns the canonical form, or None when there is no number.
    """
    strict = _STRICT_ANSWER.findall(completion)
    candidates = strict or _ANY_NUMBER.findall(completion)
    return canonical_number(candidates[-1]) if candidates else None


# ---------------------------------------------------------------------------------------------
# LaTeX answers (MATH)


def last_boxed(text: str) -> str | None:
    r"""Contents of the last \boxed{...} (or \fbox{...}), braces balanced; None if absent."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    open_brace = text.find("{", start)
    if open_brace < 0:
        # "\boxed 5" form
        rest = text[start:].split(None, 1)
        return rest[1].split("$")[0].strip() if len(rest) == 2 else None
    depth = 0
    for i in range(open_brace, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_brace + 1:i]
    return None


_FINAL_ANSWER = re.compile(r"final answer is\s*(.+?)\.?\s*I hope it is correct", re.IGNORECASE | re.DOTALL)

# Minerva (Lewkowycz et al., 2022, appendix D.1): rewrites, then words/units that carry no value.
_SUBSTITUTIONS = [("an ", ""), ("a ", ""), (".$", "$"), ("\\$", ""), ("\\ ", ""), (" ", ""),
                  ("mbox", "text"), (",\\text{and}", ","), ("\\text{and}", ","), ("\\text{m}", "\\text{}"),
                  ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\left", ""), ("\\right", "")]
_REMOVED = ["square", "ways", "integers", "dollars", "mph", "inches", "ft", "hours", "km", "units",
            "\\ldots", "sue", "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm",
            "pounds", "meters", "meals", "edges", "students", "childrentickets", "multiples",
            "\\text{s}", "\\text{.}", "\\text{\ns}", "\\text{}^2", "\\text{}^3", "\\text{\n}",
            "\\text{}", "\\mathrm{th}", "^\\circ", "^{\\circ}", "\\;", ",\\!", "{,}", '"', "\\dots"]
_UNWRAP = [re.compile(p) for p in (r"\\text\{(.*?)\}", r"\\textbf\{(.*?)\}", r"\\overline\{(.*?)\}",
                                    r"\\boxed\{(.*)\}")]


def normalize_math_answer(answer: str) -> str:
    """Minerva's final-answer normalisation: keep the right-hand side, drop units and markup."""
    answer = answer.split("=")[-1]
    for before, after in _SUBSTITUTIONS:
        answer = answer.replace(before, after)
    for word in _REMOVED:
        answer = answer.replace(word, "")
    answer = re.sub(r"(.*?)(\$)(.*?)(\$)(.*)", r"$\3$", answer)
    for pattern in _UNWRAP:
        answer = pattern.sub(r"\1", answer)
    answer = re.sub(r"(frac)([^{])(.)", r"frac{\2}{\3}", answer)  # \frac12 -> \frac{1}{2}
    answer = re.sub(r"(sqrt)([^{])", r"sqrt{\2}", answer)  # \sqrt2 -> \sqrt{2}
    answer = answer.replace("$", "").strip()
    if answer.replace(",", "").isdigit():
        answer = answer.replace(",", "")
    return answer


def extract_math_answer(completion: str) -> str | None:
    r"""The answer of a Minerva-format solution: "Final Answer: The final answer is X. I hope it
    is correct." when present, else the last \boxed{}; normalised. None when neither is there."""
    match = _FINAL_ANSWER.search(completion)
    raw = match.group(1) if match else last_boxed(completion)
    return None if raw is None else normalize_math_answer(raw)


def math_equal(prediction: str | None, reference: str) -> bool:
    """Normalised strings equal, or both numbers of equal value ('0.5' vs '.5')."""
    if prediction is None:
        return False
    if prediction == reference:
        return True
    a, b = canonical_number(prediction), canonical_number(reference)
    return a is not None and a == b

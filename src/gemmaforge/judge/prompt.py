"""The judging prompt: a rubric template with the question, the two answers and maybe a reference.

Templates use `string.Template` placeholders ($question, $answer_a, $answer_b, $reference; write a
literal dollar as $$), so answers full of braces (code, JSON) need no escaping. The shipped pair is
`templates/pairwise.txt` and, for items with a reference answer, `templates/pairwise_reference.txt`.
A user's template (`--judge-template FILE`) is used for every item: if it names $reference, every
item needs a reference; if it does not, references are not shown.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .types import JudgeError, JudgeItem

LABELS = ("A", "B")  # the answer tokens: the first-shown answer is "A"
REQUIRED = ("question", "answer_a", "answer_b")
KNOWN = (*REQUIRED, "reference")


@dataclass(frozen=True)
class JudgePrompt:
    plain: string.Template
    with_reference: string.Template
    origin: str  # where the template came from, for error messages and the run record

    @property
    def fingerprint(self) -> str:
        """A short hash of the template text(s): a resumed run must judge with the same prompt."""
        text = self.plain.template + "\0" + self.with_reference.template
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def render(self, item: JudgeItem, swapped: bool) -> str:
        """The judge's user message; `swapped` shows response_b as "A" and response_a as "B"."""
        a, b = (item.response_b, item.response_a) if swapped else (item.response_a, item.response_b)
        values = {"question": item.prompt, "answer_a": a, "answer_b": b}
        template = self.plain
        if item.reference is not None:
            template = self.with_reference
            values["reference"] = item.reference
        elif "reference" in _names(template, self.origin):
            raise JudgeError(f"judge template {self.origin} shows $reference, but an item has no reference "
                             f"answer (prompt {item.prompt[:60]!r})")
        return template.substitute(values)


def load_prompt(path: str | Path | None = None) -> JudgePrompt:
    """The shipped templates, or the user's file (checked here, before any work starts)."""
    if path is None:
        files = resources.files(__package__) / "templates"
        plain = _checked((files / "pairwise.txt").read_text(encoding="utf-8"), "pairwise.txt")
        ref = _checked((files / "pairwise_reference.txt").read_text(encoding="utf-8"), "pairwise_reference.txt")
        if "reference" not in _names(ref, "pairwise_reference.txt"):
            raise JudgeError("pairwise_reference.txt does not show $reference")
        return JudgePrompt(plain, ref, "builtin")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise JudgeError(f"judge template {path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    t = _checked(text, str(path))
    return JudgePrompt(t, t, str(path))


def _names(t: string.Template, origin: str) -> set[str]:
    """Placeholder names in `t`; a lone `$` is an error naming the line."""
    names = set()
    for m in t.pattern.finditer(t.template):
        if m.group("invalid") is not None:
            line = t.template.count("\n", 0, m.start("invalid")) + 1
            raise JudgeError(f"judge template {origin}:{line}: a '$' that starts no placeholder (write $$ for a "
                             f"literal dollar; placeholders: {', '.join('$' + k for k in KNOWN)})")
        name = m.group("named") or m.group("braced")
        if name:
            names.add(name)
    return names


def _checked(text: str, origin: str) -> string.Template:
    t = string.Template(text)
    names = _names(t, origin)
    unknown = names - set(KNOWN)
    missing = [k for k in REQUIRED if k not in names]
    if unknown or missing:
        what = (f"unknown placeholder(s) {', '.join('$' + k for k in sorted(unknown))}" if unknown
                else f"missing {', '.join('$' + k for k in missing)}")
        raise JudgeError(f"judge template {origin}: {what}; placeholders: {', '.join('$' + k for k in KNOWN)}")
    return t

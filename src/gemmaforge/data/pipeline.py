"""`prepare`: sources -> filters -> decontamination -> dedup -> mixture -> tokenise -> packed shards.

Order of work: the output's temporary directory is created first (which proves the output can be
written), then every other check that can fail on bad input (sources, eval export, tokenizer) runs
before any document is processed; shards are written to that temporary directory and moved into
place only when the run has succeeded, so a failure never leaves half an output.
Per-document work runs on an executor (processes or Ray); global steps (dedup clustering, mixture,
writing) run here, in a fixed order, so the shards depend only on the config and the seed.
"""

from __future__ import annotations

import glob
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from ..tokenizer.tokenizer import load_tokenizer
from .config import DataConfig, FilterConfig
from .decontam import EvalNgrams
from .dedup import MinHasher, exact_key, near_duplicates
from .errors import DataError
from .filters import Drop
from .manifest import DropLog, Manifest, SourceStats
from .mixture import mix
from .pack import DTYPE, ShardWriter
from .parallel import Executor, LocalExecutor
from .sources import Document, open_source


class Tokenizer(Protocol):
    """What the pipeline needs from a tokenizer (gemmaforge.load_tokenizer's objects fit)."""

    bos_id: int
    eos_id: int

    def encode(self, text: str, add_bos: bool = True) -> list[int]: ...


@dataclass
class _Analyzer:
    """Per-document work context, shipped to each worker once."""

    filters: list[FilterConfig]
    eval_ngrams: EvalNgrams | None
    min_matches: int
    exact: bool
    minhasher: MinHasher | None


@dataclass
class _Result:
    text: str | None = None  # set only when a filter edited the text
    drop: tuple[str, str, str] | None = None  # (stage, reason code, measured value vs threshold)
    eval_items: list[str] = field(default_factory=list)
    eval_ngrams: int = 0
    exact: bytes | None = None
    signature: np.ndarray | None = None


def _analyze(ctx: _Analyzer, docs: list[Document]) -> list[_Result]:
    texts = [d.text for d in docs]
    res = [_Result(drop=None if d.text.strip() else ("input", "empty", "")) for d in docs]
    for f in ctx.filters:
        todo = [i for i, d in enumerate(docs) if res[i].drop is None and f.applies_to(d.source, d.kind)]
        if todo:
            for i, verdict in zip(todo, f.filter.apply([texts[i] for i in todo])):
                if isinstance(verdict, Drop):
                    res[i].drop = (f.name, verdict.reason, verdict.detail)
                else:
                    texts[i] = verdict
    for i, (d, r) in enumerate(zip(docs, res)):
        if r.drop is not None:
            continue
        if texts[i] is not d.text:
            r.text = texts[i]
        if ctx.eval_ngrams is not None:
            r.eval_ngrams, r.eval_items = ctx.eval_ngrams.matches(texts[i])
            if r.eval_ngrams >= ctx.min_matches:
                r.drop = ("decontam", "eval_ngram_overlap", f"{r.eval_ngrams} >= {ctx.min_matches} n-grams")
                continue
        if ctx.exact:
            r.exact = exact_key(texts[i])
        if ctx.minhasher is not None:
            r.signature = ctx.minhasher.signature(texts[i])
    return res


def _check_mixture(weights: dict[str, float], kept: set[str], log: DropLog) -> None:
    """Refuse a positive weight for a kind the filters emptied: the mixture would renormalise it away."""
    for kind, w in weights.items():
        if w > 0 and kind not in kept:
            raise DataError(f"mixture.{kind}: weight {w} but no {kind} document survived filtering "
                            f"(dropped: {log.kind_summary(kind)}); loosen its filters or give it weight 0")


def _tokenize(tok: Tokenizer, texts: list[str]) -> list[np.ndarray]:
    return [np.asarray(tok.encode(t, add_bos=True) + [tok.eos_id], dtype=DTYPE) for t in texts]


def make_executor(config: DataConfig) -> Executor:
    if config.backend == "ray":
        from .ray_backend import RayExecutor

        return RayExecutor(config.workers, config.batch_docs, config.progress)
    return LocalExecutor(config.workers, config.batch_docs, config.progress)


def _check_output(config: DataConfig) -> Path:
    """The output path, refused when it holds data that `overwrite` does not allow replacing."""
    out = Path(config.output)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())) and not config.overwrite:
        raise DataError(f"output {out} already exists and is not empty (set overwrite = true to replace it)")
    return out


def _make_tmp(out: Path) -> Path:
    """Create the output's parent and this run's temporary directory next to it, before any work.

    Only creating them proves they can be created: os.access says yes to root even on /proc or a
    read-only mount, and a path under a regular file fails only when used.
    """
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as e:
        raise DataError(f"output {out}: cannot create {e.filename}: {e.strerror}") from None
    return tmp


def _alive(pid: int) -> bool:
    """Signal 0 tests that a process exists without disturbing it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    return True


def _remove_stale_tmps(out: Path) -> None:
    """Delete the temporary directories of killed runs of this output; a live process's is kept."""
    prefix = f".{out.name}.tmp-"
    for p in out.parent.glob(glob.escape(prefix) + "*"):
        pid = p.name[len(prefix):]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def prepare(config: DataConfig, tokenizer: Tokenizer | None = None,
            executor: Executor | None = None) -> Manifest:
    """Run the whole pipeline; returns the manifest also written to `config.output`/manifest.json.

    `tokenizer` defaults to `gemmaforge.load_tokenizer(config.tokenizer)`; `executor` to the one
    `config.backend` names (the caller closes an executor it passes in).
    """
    out = _check_output(config)
    tmp = _make_tmp(out)
    _remove_stale_tmps(out)
    try:
        manifest = _prepare_in(tmp, config, tokenizer, executor)
        _replace(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):  # sources' read errors arrive as DataError: this is the output (disk full, ...)
            where = f" {e.filename}" if e.filename else ""
            raise DataError(f"output {out}: cannot write{where}: {e.strerror or e}") from None
        raise
    return manifest


def _prepare_in(tmp: Path, config: DataConfig, tokenizer: Tokenizer | None, executor: Executor | None) -> Manifest:
    """Check the remaining inputs, then run the pipeline with shards and manifest written to `tmp`."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    readers = [open_source(s, f"sources[{i}]") for i, s in enumerate(config.sources)]
    eval_ngrams = EvalNgrams.load(config.decontam.ngrams) if config.decontam.ngrams else None
    tok = tokenizer if tokenizer is not None else load_tokenizer(config.tokenizer)
    docs = [d for read in tqdm(readers, desc="read", unit="source", disable=not config.progress) for d in read()]
    if not docs:
        raise DataError("the sources hold no documents")
    timings["read"] = time.perf_counter() - t

    own = executor is None
    executor = executor if executor is not None else make_executor(config)
    try:
        return _run(config, tmp, docs, eval_ngrams, tok, executor, timings)
    finally:
        if own:
            executor.close()


def _run(config: DataConfig, tmp: Path, docs: list[Document], eval_ngrams: EvalNgrams | None,
         tok: Tokenizer, executor: Executor, timings: dict[str, float]) -> Manifest:
    d = config.dedup
    ctx = _Analyzer(config.filters, eval_ngrams, config.decontam.min_matches, d.exact,
                    MinHasher(d.bands * d.rows, d.ngram, config.seed) if d.minhash else None)
    t = time.perf_counter()
    results = executor.map(_analyze, ctx, docs, "filter")
    timings["filter"] = time.perf_counter() - t

    t = time.perf_counter()
    log = DropLog(config.examples)
    stats = {s.name: SourceStats(s.kind) for s in config.sources}
    contaminated = []
    for doc, r in zip(docs, results):
        stats[doc.source].documents_read += 1
        if r.text is not None:
            doc.text = r.text
        if r.drop:
            stage, reason, why = r.drop
            detail = {"eval_items": r.eval_items} if stage == "decontam" else {}
            log.add(stage, reason, doc, why, **detail)
            if detail:
                contaminated.append({"id": doc.id, "ngrams": r.eval_ngrams, "eval_items": r.eval_items})
    alive = [i for i, r in enumerate(results) if r.drop is None]
    if d.exact:
        first: dict[bytes, int] = {}
        survivors = []
        for i in alive:
            j = first.setdefault(results[i].exact, i)
            if j == i:
                survivors.append(i)
            else:
                log.add("dedup", "exact", docs[i], duplicate_of=docs[j].id)
        alive = survivors
    if d.minhash:
        dups = near_duplicates([results[i].signature for i in alive], d.bands, d.rows, d.threshold)
        for k, j in sorted(dups.items()):
            log.add("dedup", "near_duplicate", docs[alive[k]], duplicate_of=docs[alive[j]].id)
        alive = [i for k, i in enumerate(alive) if k not in dups]
    timings["dedup"] = time.perf_counter() - t
    if not alive:
        raise DataError(f"no document is left after filtering ({len(docs)} read; dropped: {log.summary()}); "
                        "loosen the filters or add sources")
    _check_mixture(config.mixture, {docs[i].kind for i in alive}, log)

    t = time.perf_counter()
    tokens = executor.map(_tokenize, tok, [docs[i].text for i in alive], "tokenize")
    timings["tokenize"] = time.perf_counter() - t
    t = time.perf_counter()
    for i, toks in zip(alive, tokens):
        stats[docs[i].source].documents_kept += 1
        stats[docs[i].source].tokens_kept += len(toks)
    order, kinds = mix([docs[i].kind for i in alive], [len(x) for x in tokens], config.mixture,
                       config.mixture_tokens, config.seed)
    writer = ShardWriter(tmp, config.shard_tokens)
    for k in tqdm(order, desc="write", unit="doc", disable=not config.progress):
        writer.write(tokens[k])
        s = stats[docs[alive[k]].source]
        s.documents_written += 1
        s.tokens_written += len(tokens[k])
    writer.close()
    total = sum(s["tokens"] for s in writer.shards)
    timings["mix_and_write"] = time.perf_counter() - t
    manifest = Manifest(
        seq_len=config.seq_len, total_tokens=total, num_blocks=max(0, (total - 1) // config.seq_len),
        dtype="uint32", shards=writer.shards, tokenizer=_describe(tok, config.tokenizer), sources=stats,
        mixture={k: {**vars(m), "epochs": round(m.epochs, 4)} for k, m in kinds.items()},
        drops=log.counts, contaminated=contaminated, timings_s={k: round(v, 3) for k, v in timings.items()},
        config=config.to_dict())
    manifest.write(tmp)
    if hasattr(tok, "save"):  # the data carries its tokenizer, so training can hand it on to checkpoints
        tok.save(tmp)
    return manifest


def _describe(tok: Any, source: str) -> dict[str, Any]:
    return {"source": source, "bos_id": tok.bos_id, "eos_id": tok.eos_id,
            "vocab_size": getattr(tok, "vocab_size", None)}


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished output into place; an old output is removed only after that succeeded."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)

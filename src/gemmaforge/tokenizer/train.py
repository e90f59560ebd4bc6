"""Train a Gemma-style SentencePiece tokenizer on your own text.

Same options as Gemma's own model: BPE, byte fallback (no character is ever unknown), digits split
one by one, identity normalisation, no dummy prefix, whitespace kept as written (runs of spaces,
tabs and newlines are whole pieces, as in Gemma), and the special pieces at Gemma's fixed ids:

    0 <pad>  1 <eos>  2 <bos>  3 <unk>  4 <mask>
    family 3:    5 [multimodal], <unused0>..<unused{N-1}>, <start_of_turn>, <end_of_turn>
    family 1/2:  5 <2mass>, 6 [@BOS@], <unused0>..<unused{N-1}>, <start_of_turn>, <end_of_turn>

With the default N=99 reserved pieces the turn tokens land where Gemma has them (105/106 for
Gemma 3, 106/107 for Gemma 1/2), so a trained tokenizer can stand in for the real one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import sentencepiece as spm

from ..errors import InputError, TokenizerError
from ..util.argtypes import NON_NEGATIVE, POSITIVE
from ..util.paths import write_atomic
from .tokenizer import TOKENIZER_FILE, Tokenizer

_FAMILY_EXTRAS = {1: ["<2mass>", "[@BOS@]"], 2: ["<2mass>", "[@BOS@]"], 3: ["[multimodal]"]}
_LONGEST_RUN = 31  # Gemma's vocabulary has whitespace runs up to 31 characters
_MAX_CHARS = 4096  # longer lines are cut into pieces this long (SentencePiece skips long sentences)
# One word with a slash or a file extension: meant as a path, never as a document.
_PATHLIKE = re.compile(r"\S*/\S*|\S+\.[A-Za-z]\w{0,7}")


def special_pieces(family: int, num_reserved: int) -> list[str]:
    """The user-defined pieces after the four control ones, in id order (ids 4, 5, ...)."""
    return ["<mask>", *_FAMILY_EXTRAS[family], *(f"<unused{k}>" for k in range(num_reserved)),
            "<start_of_turn>", "<end_of_turn>",
            *("\n" * n for n in range(1, _LONGEST_RUN + 1)),
            *("\u2581" * n for n in range(2, _LONGEST_RUN + 1)),  # SentencePiece spells a space "\u2581"
            *("\t" * n for n in range(1, _LONGEST_RUN + 1))]


def train_tokenizer(texts: Iterable[str | os.PathLike], vocab_size: int, output_dir: str | Path, *,
                    family: int = 3, num_reserved: int = 99, input_sentence_size: int = 1_000_000,
                    num_threads: int | None = None) -> Tokenizer:
    """Train on `texts` and write `output_dir/tokenizer.model`; returns the loaded tokenizer.

    `texts` yields documents (strings) and UTF-8 text files, read lazily line by line, so the corpus
    never has to fit in memory. A file is a `pathlib.Path` or a string naming an existing file; a
    one-word string that looks like a file name ("corpus.txt", "data/x") but names no file is an
    error, not a document. SentencePiece keeps at most `input_sentence_size` lines (a uniform sample
    when there are more) -- that bounds the memory, roughly that many times the average line
    length. The same input gives the same model. `output_dir` is created before training starts.
    A single file (`Path` or string) may be passed without a list around it."""
    if isinstance(texts, (str, os.PathLike)):  # one file or document, not an iterable of characters
        texts = [texts]
    if family not in _FAMILY_EXTRAS:
        raise InputError(f"family must be 1, 2 or 3, got {family!r}")
    if num_reserved < 0:
        raise InputError(f"num_reserved (--reserved) must be >= 0, got {num_reserved}")
    specials = special_pieces(family, num_reserved)
    minimum = 4 + len(specials) + 256 + 1
    if vocab_size < minimum:
        raise InputError(f"vocab_size {vocab_size} is too small: the special, whitespace and 256 byte "
                         f"pieces alone take {minimum - 1} (lower num_reserved={num_reserved}?)")
    output_dir = Path(output_dir)
    created = _create_dir(output_dir)
    try:
        proto = _train(_Lines(texts), vocab_size, specials, input_sentence_size, num_threads)
    except BaseException:
        for d in created:  # leave nothing behind
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    path = output_dir / TOKENIZER_FILE
    write_atomic(path, proto)
    return Tokenizer(proto, family=family, origin=str(path))


def _create_dir(path: Path) -> list[Path]:
    """Create `path` now, so a bad output fails before hours of training; returns the directories
    it made, deepest first."""
    made = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"{path}: exists and is not a directory; the output is a directory") from None
    except OSError as e:
        raise InputError(f"{path}: cannot create the output directory: {e.strerror}") from None
    return made


def _train(feed: _Lines, vocab_size: int, specials: list[str], input_sentence_size: int,
           num_threads: int | None) -> bytes:
    """The serialized SentencePiece model, with Gemma's options."""
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(feed), model_writer=model, model_type="bpe", vocab_size=vocab_size,
            byte_fallback=True, split_digits=True, allow_whitespace_only_pieces=True,
            split_by_whitespace=False, normalization_rule_name="identity", add_dummy_prefix=False,
            remove_extra_whitespaces=False, pad_id=0, eos_id=1, bos_id=2, unk_id=3,
            pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
            user_defined_symbols=specials, input_sentence_size=input_sentence_size,
            shuffle_input_sentence=True, max_sentence_length=4 * _MAX_CHARS,
            num_threads=num_threads or os.cpu_count() or 1, minloglevel=2)
    except RuntimeError as e:
        if feed.error is not None:
            raise feed.error from None
        if feed.lines == 0:
            raise InputError("no text in the inputs: every document and file is empty") from None
        raise TokenizerError(f"SentencePiece training failed: {e}") from None
    return model.getvalue()


class _Lines:
    """Non-empty lines of the texts and files, cut to at most _MAX_CHARS characters. Remembers the
    first error, which SentencePiece would otherwise turn into a bare RuntimeError."""

    def __init__(self, texts: Iterable[str | os.PathLike]) -> None:
        self.texts = texts
        self.error: Exception | None = None
        self.lines = 0

    def __iter__(self) -> Iterator[str]:
        try:
            for item in self.texts:
                source = _as_file(item)
                for line in _read_lines(source) if isinstance(source, Path) else source.split("\n"):
                    for start in range(0, len(line), _MAX_CHARS):
                        self.lines += 1
                        yield line[start:start + _MAX_CHARS]
        except Exception as e:
            self.error = e
            raise


def _as_file(item: str | os.PathLike) -> Path | str:
    """The file `item` names (checked), or the document it is; see `train_tokenizer`."""
    if isinstance(item, str) and ("\n" in item or not (os.path.isfile(item) or _PATHLIKE.fullmatch(item))):
        return item
    path = Path(item)
    check_inputs([path])
    return path


def check_inputs(paths: Sequence[Path]) -> None:
    """Each of `paths` must be a file; one line names those that are not."""
    dirs = [str(p) for p in paths if p.is_dir()]
    if dirs:
        raise InputError(f"input is a directory, not a text file: {', '.join(dirs)} (name the files in it)")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"no such input file: {', '.join(missing)}")


def _read_lines(path: Path) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                yield line.rstrip("\n")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e}") from None


# -- command line: `gemmaforge tokenizer train` --------------------------------------------
def add_train_args(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments of `gemmaforge tokenizer train` on `parser`."""
    parser.add_argument("--input", nargs="+", required=True, type=Path, metavar="FILE",
                        help="UTF-8 text files to train on (streamed line by line)")
    parser.add_argument("--vocab-size", type=POSITIVE, required=True, metavar="N", help="pieces in the vocabulary")
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="writes DIR/tokenizer.model")
    parser.add_argument("--force", action="store_true", help="replace a tokenizer.model already in DIR")
    parser.add_argument("--family", type=int, choices=(1, 2, 3), default=3,
                        help="Gemma generation whose special-token layout to copy")
    parser.add_argument("--reserved", type=NON_NEGATIVE, default=99, metavar="N", help="<unusedK> pieces")
    parser.add_argument("--input-sentence-size", type=POSITIVE, default=1_000_000, metavar="N",
                        help="most lines kept in memory, sampled uniformly")
    parser.add_argument("--threads", type=POSITIVE, default=None, help="training threads (default: all cores)")


def run_train(args: argparse.Namespace) -> Tokenizer:
    """Train from parsed `add_train_args` arguments."""
    check_inputs(args.input)  # before training, like the output directory
    if (args.output / TOKENIZER_FILE).exists() and not args.force:
        raise InputError(f"{args.output / TOKENIZER_FILE} already exists; pass --force to replace it")
    return train_tokenizer(args.input, args.vocab_size, args.output, family=args.family,
                           num_reserved=args.reserved, input_sentence_size=args.input_sentence_size,
                           num_threads=args.threads)


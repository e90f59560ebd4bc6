"""The Gemma tokenizer: SentencePiece with Gemma's special tokens and chat template.

Conventions (the same for every source):
  * `encode` turns special-token strings typed in the text into their ids, as Hugging Face does:
    user-defined pieces (`<start_of_turn>`, `<unused0>`, ...) are matched by SentencePiece itself,
    control pieces (`<bos>`, `<eos>`, `<pad>`) and `<unk>` by us. So the chat string, which starts
    with "<bos>", encodes to the right ids.
  * One BOS only: `add_bos=True` adds none when the ids already start with BOS.
  * `decode` skips nothing: every id decodes to its text, `<bos>` and `<end_of_turn>` included,
    so `decode(encode(s, add_bos=False)) == s` for every string -- except that "\u2581", which is
    how SentencePiece itself writes a space, comes back as a space.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm
from google.protobuf.message import DecodeError
from sentencepiece import sentencepiece_model_pb2 as pb
from sentencepiece import sentencepiece_pb2

from ..config import ARCH_FAMILY
from ..errors import CheckpointError, InputError, TokenizerError
from ..util.paths import write_atomic
from ..weights.sources import resolve
from .chat_template import render_ids, render_text

TOKENIZER_FILE = "tokenizer.model"

# Names of the special tokens every Gemma vocabulary has, and their pieces.
_REQUIRED = {"pad": "<pad>", "eos": "<eos>", "bos": "<bos>", "unk": "<unk>",
             "start_of_turn": "<start_of_turn>", "end_of_turn": "<end_of_turn>"}
_OPTIONAL = {"mask": "<mask>"}


class Tokenizer:
    """A SentencePiece model plus the Gemma conventions above. Build with `load_tokenizer`."""

    def __init__(self, model_proto: bytes, family: int | None = None, origin: str = "<memory>") -> None:
        if family not in (None, 1, 2, 3):
            raise InputError(f"family must be 1, 2 or 3, got {family!r}")
        self.origin = origin  # where it came from, for error messages
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(model_proto)
        except (RuntimeError, OSError) as e:
            raise TokenizerError(f"{origin}: not a valid SentencePiece model: {e}") from None
        self._proto = model_proto
        ids = {name: self._find(piece) for name, piece in {**_REQUIRED, **_OPTIONAL}.items()}
        missing = [_REQUIRED[n] for n in _REQUIRED if ids[n] is None]
        if missing:
            raise TokenizerError(f"{origin}: not a Gemma tokenizer, no piece {', '.join(missing)}")
        self.special_ids: dict[str, int] = {n: i for n, i in ids.items() if i is not None}
        self.pad_id, self.eos_id, self.bos_id, self.unk_id = (ids[n] for n in ("pad", "eos", "bos", "unk"))
        self.start_of_turn_id: int = ids["start_of_turn"]
        self.end_of_turn_id: int = ids["end_of_turn"]
        # Gemma 2 reuses Gemma 1's vocabulary, so the vocabulary alone can only tell 3 from 1/2;
        # their chat rules are the same.
        self.family = family or (3 if self._find("[multimodal]") is not None else 1)
        self._control = {self._sp.id_to_piece(i): i for i in range(self.vocab_size)
                         if self._sp.is_control(i) or self._sp.is_unknown(i)}
        self._control_ids = set(self._control.values())
        self._control_re = re.compile("|".join(map(re.escape, sorted(self._control, key=len, reverse=True))))

    # -- vocabulary ----------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def id_to_piece(self, i: int) -> str:
        self._check_ids([i])
        return self._sp.id_to_piece(i)

    def piece_to_id(self, piece: str) -> int:
        i = self._find(piece)
        if i is None:
            raise KeyError(f"no piece {piece!r} in the vocabulary of {self.origin}")
        return i

    def _find(self, piece: str) -> int | None:
        i = self._sp.piece_to_id(piece)
        return i if self._sp.id_to_piece(i) == piece else None

    # -- encode / decode -----------------------------------------------------------------
    def encode(self, text: str, add_bos: bool = True, add_eos: bool = False) -> list[int]:
        """Token ids of `text`; see the module docstring for special tokens and BOS."""
        return self._frame(self._encode_text(text), add_bos, add_eos)

    def encode_batch(self, texts: Sequence[str], add_bos: bool = True, add_eos: bool = False) -> list[list[int]]:
        """`encode` for many texts; those without control-token strings go to SentencePiece as one
        multi-threaded batch."""
        texts = list(texts)
        plain = [i for i, t in enumerate(texts) if not self._control_re.search(t)]
        out: list[list[int]] = [[] for _ in texts]
        for i, ids in zip(plain, self._sp.encode([texts[i] for i in plain]) if plain else ()):
            out[i] = ids
        for i in sorted(set(range(len(texts))) - set(plain)):
            out[i] = self._encode_text(texts[i])
        return [self._frame(ids, add_bos, add_eos) for ids in out]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`, special tokens included as written (`<bos>`, `<end_of_turn>`, ...)."""
        ids = [int(i) for i in ids]
        self._check_ids(ids)
        parts, run = [], []
        for i in ids:
            if i in self._control_ids:  # SentencePiece would drop these
                parts += [self._sp.decode(run), self._sp.id_to_piece(i)]
                run = []
            else:
                run.append(i)
        return "".join(parts) + self._sp.decode(run)

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[int]]:
        """Ids of `text` (no BOS/EOS added) and the character offset where each token starts."""
        ids, starts = [], []
        for offset, chunk, control in self._chunks(text):
            if control is not None:
                ids.append(control)
                starts.append(offset)
                continue
            spt = sentencepiece_pb2.SentencePieceText()
            spt.ParseFromString(self._sp.encode(chunk, out_type="serialized_proto"))
            char_at = _byte_to_char(chunk)
            for p in spt.pieces:
                ids.append(p.id)
                starts.append(offset + char_at[p.begin])
        return ids, starts

    def _encode_text(self, text: str) -> list[int]:
        ids: list[int] = []
        for _, chunk, control in self._chunks(text):
            ids += [control] if control is not None else self._sp.encode(chunk)
        return ids

    def _chunks(self, text: str) -> Iterable[tuple[int, str, int | None]]:
        """(offset, text, None) pieces for SentencePiece and (offset, piece, id) for control tokens."""
        pos = 0
        for m in self._control_re.finditer(text):
            if m.start() > pos:
                yield pos, text[pos:m.start()], None
            yield m.start(), m.group(), self._control[m.group()]
            pos = m.end()
        if pos < len(text):
            yield pos, text[pos:], None

    def _frame(self, ids: list[int], add_bos: bool, add_eos: bool) -> list[int]:
        if add_bos and not (ids and ids[0] == self.bos_id):
            ids = [self.bos_id] + ids
        return ids + [self.eos_id] if add_eos else ids

    def _check_ids(self, ids: Sequence[int]) -> None:
        n = self.vocab_size
        bad = [i for i in ids if not 0 <= i < n]
        if bad:
            raise InputError(f"token id {bad[0]} is out of range for the {n}-piece vocabulary of {self.origin}")

    # -- chat ----------------------------------------------------------------------------
    def apply_chat_template(self, messages: Sequence[dict], add_generation_prompt: bool = True,
                            system: str | None = None) -> str:
        """The conversation as the model was trained to see it, starting with "<bos>".
        `encode(result)` gives its ids (one BOS). `system`: "fold" or "refuse" (default by family)."""
        return render_text(messages, self.family, add_generation_prompt, system)

    def render_chat(self, messages: Sequence[dict], add_generation_prompt: bool = False,
                    system: str | None = None) -> tuple[list[int], list[int]]:
        """(ids, loss_mask): mask 1 on tokens of model turns (content and closing <end_of_turn>)."""
        return render_ids(self, messages, add_generation_prompt, system)

    # -- saving --------------------------------------------------------------------------
    def serialized_model_proto(self) -> bytes:
        return self._proto

    def save(self, directory: str | Path) -> Path:
        """Write `tokenizer.model` (the official SentencePiece format) into `directory`, atomically."""
        path = Path(directory) / TOKENIZER_FILE
        write_atomic(path, self._proto)
        return path

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, family={self.family}, origin={self.origin!r})"


def load_tokenizer(source: str | Path, family: int | None = None) -> Tokenizer:
    """The tokenizer of `source`: a shipped model name ("gemma3-270m"), a .gguf file, a directory
    holding `tokenizer.model` (Hugging Face layout, our checkpoints, `train_tokenizer` output) or
    a `tokenizer.model` file itself. `family` overrides the detected Gemma generation."""
    p = Path(str(source)).expanduser()
    if p.is_dir() and (p / TOKENIZER_FILE).is_file():
        return _from_model_file(p / TOKENIZER_FILE, family or _family_from_config(p))
    if p.is_file() and p.suffix == ".model":
        return _from_model_file(p, family)
    try:
        src = resolve(source)
    except CheckpointError as e:
        raise TokenizerError(str(e)) from None
    if src.kind == "gguf":
        from .gguf import family_from_gguf, model_proto_from_gguf, read_gguf_metadata
        meta = read_gguf_metadata(src.path)
        proto = model_proto_from_gguf(src.path, meta).SerializeToString()
        return Tokenizer(proto, family or family_from_gguf(meta), origin=str(src.path))
    folder = src.path if src.path.is_dir() else src.path.parent  # a gemma_pytorch .ckpt: look beside it
    if (folder / TOKENIZER_FILE).is_file():
        return _from_model_file(folder / TOKENIZER_FILE, family or _family_from_config(folder))
    raise TokenizerError(f"{folder / TOKENIZER_FILE}: no such file; a {src.kind} checkpoint needs its "
                         "SentencePiece tokenizer.model next to it")


def _from_model_file(path: Path, family: int | None) -> Tokenizer:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TokenizerError(f"{path}: cannot read tokenizer: {e}") from None
    proto = pb.ModelProto()
    try:
        proto.ParseFromString(data)
    except DecodeError as e:
        raise TokenizerError(f"{path}: corrupt SentencePiece model ({e})") from None
    if not proto.pieces:
        raise TokenizerError(f"{path}: not a SentencePiece model (no pieces)")
    return Tokenizer(data, family, origin=str(path))


def _family_from_config(folder: Path) -> int | None:
    """Gemma generation from a config.json next to the tokenizer (Hugging Face's or ours)."""
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if isinstance(cfg.get("family"), int):
        return cfg["family"]
    return ARCH_FAMILY.get(cfg.get("model_type", ""))


def _byte_to_char(text: str) -> list[int]:
    """Map from each UTF-8 byte offset of `text` (and its end) to the character offset."""
    out = []
    for i, c in enumerate(text):
        out += [i] * len(c.encode("utf-8"))
    return out + [len(text)]

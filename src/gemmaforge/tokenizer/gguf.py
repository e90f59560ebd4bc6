"""Rebuild Gemma's SentencePiece model from the vocabulary in a GGUF file's header.

llama.cpp's converter (`convert_hf_to_gguf.py`, `_create_vocab_sentencepiece`) copies every piece,
score and type out of `tokenizer.model`, then overwrites the tokens listed in the Hugging Face
`added_tokens_decoder` -- for Gemma that is every special and user-defined piece:
  * those marked special become CONTROL (type 3), the rest USER_DEFINED (type 4), so `<unk>`,
    `<start_of_turn>`, `<unused0>`, `<mask>` all arrive as CONTROL;
  * their score becomes -1000 (SentencePiece stores 0 for these pieces);
  * in USER_DEFINED pieces every "\u2581" is replaced by a real space ("pre-normalize user-defined
    spaces"), so Gemma's whitespace-run pieces "\u2581\u2581".."\u2581"*31 arrive as "  ".."  "*31.
We undo each step. Normal and byte pieces keep the score the original model gave them; BPE
encoding merges by those scores, so ids come out as Gemma's own tokenizer gives them.

Reading the header directly takes ~0.1 s for the 262k-piece Gemma 3 vocabulary (gguf.GGUFReader
takes ~10 s because it indexes every tensor), and the whole rebuild ~0.4 s, so nothing is cached.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path
from typing import Any

from sentencepiece import sentencepiece_model_pb2 as pb

from ..config import ARCH_FAMILY
from ..errors import TokenizerError

# GGUF token types (llama.cpp's SentencePieceTokenTypes).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# Gemma's control pieces, by name. The header's tokenizer.ggml.{bos,eos,unknown,padding}_token_id
# are not trusted: some converted files carry wrong values (all 1), the piece names never lie.
CONTROL_PIECES = ("<pad>", "<eos>", "<bos>")
UNK_PIECE = "<unk>"

# GGUF value types -> struct format of one scalar.
_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def read_gguf_metadata(path: Path) -> dict[str, Any]:
    """All key/value pairs of a GGUF (v2/v3, little-endian) header; tensors are not touched."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _parse_header(buf, path)
    except (struct.error, UnicodeDecodeError, KeyError, ValueError) as e:
        raise TokenizerError(f"{path}: corrupt or truncated GGUF header ({type(e).__name__}: {e})") from None
    except OSError as e:
        raise TokenizerError(f"{path}: cannot read GGUF file: {e}") from None


def _parse_header(buf: mmap.mmap, path: Path) -> dict[str, Any]:
    magic, version = struct.unpack_from("<4sI", buf, 0)
    if magic != b"GGUF":
        raise TokenizerError(f"{path}: not a GGUF file (magic {magic!r})")
    if version not in (2, 3):
        raise TokenizerError(f"{path}: GGUF version {version} is not supported (2 or 3)")
    _, n_kv = struct.unpack_from("<QQ", buf, 8)
    pos = 24

    def string(pos: int) -> tuple[str, int]:
        (n,) = struct.unpack_from("<Q", buf, pos)
        end = pos + 8 + n
        if end > len(buf):
            raise ValueError("string runs past the end of the file")
        return buf[pos + 8:end].decode("utf-8"), end

    def value(kind: int, pos: int) -> tuple[Any, int]:
        if kind == _STRING:
            return string(pos)
        if kind == _ARRAY:
            item, n = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            if item == _STRING:
                items = []
                for _ in range(n):
                    s, pos = string(pos)
                    items.append(s)
                return items, pos
            fmt = f"<{n}{_SCALAR[item]}"
            return list(struct.unpack_from(fmt, buf, pos)), pos + struct.calcsize(fmt)
        fmt = "<" + _SCALAR[kind]
        return struct.unpack_from(fmt, buf, pos)[0], pos + struct.calcsize(fmt)

    meta: dict[str, Any] = {}
    for _ in range(n_kv):
        key, pos = string(pos)
        (kind,) = struct.unpack_from("<I", buf, pos)
        meta[key], pos = value(kind, pos + 4)
    return meta


def family_from_gguf(meta: dict[str, Any]) -> int | None:
    """Gemma generation (1, 2, 3) named by general.architecture, or None for anything else."""
    return ARCH_FAMILY.get(meta.get("general.architecture", ""))


def model_proto_from_gguf(path: Path, meta: dict[str, Any] | None = None) -> pb.ModelProto:
    """The SentencePiece ModelProto Gemma's tokenizer.model holds, rebuilt from the GGUF header."""
    meta = read_gguf_metadata(path) if meta is None else meta
    tokens = meta.get("tokenizer.ggml.tokens")
    if not tokens:
        raise TokenizerError(f"{path}: GGUF file has no tokenizer vocabulary (tokenizer.ggml.tokens)")
    kind = meta.get("tokenizer.ggml.model")
    if kind != "llama":  # llama.cpp's name for a SentencePiece vocabulary
        raise TokenizerError(
            f"{path}: tokenizer model {kind!r} is not SentencePiece-like ('llama'); "
            "only Gemma's SentencePiece vocabulary can be rebuilt")
    scores = meta.get("tokenizer.ggml.scores")
    types = meta.get("tokenizer.ggml.token_type")
    if scores is None or types is None or not len(tokens) == len(scores) == len(types):
        raise TokenizerError(
            f"{path}: tokenizer.ggml.scores/token_type missing or not one per token ({len(tokens)} tokens)")
    for name in (*CONTROL_PIECES, UNK_PIECE):
        if name not in tokens:
            raise TokenizerError(f"{path}: vocabulary has no {name} piece; not a Gemma tokenizer")

    model = pb.ModelProto()
    Type = pb.ModelProto.SentencePiece.Type
    for token, score, kind in zip(tokens, scores, types):
        piece = model.pieces.add()
        if token == UNK_PIECE:
            piece.piece, piece.type, piece.score = token, Type.UNKNOWN, 0.0
        elif token in CONTROL_PIECES:
            piece.piece, piece.type, piece.score = token, Type.CONTROL, 0.0
        elif kind in (CONTROL, USER_DEFINED):
            # Matched whole wherever it appears in text, as Gemma's tokenizer.model does.
            piece.piece, piece.type, piece.score = token.replace(" ", "\u2581"), Type.USER_DEFINED, 0.0
        elif kind == BYTE:
            piece.piece, piece.type, piece.score = token, Type.BYTE, 0.0
        elif kind == UNUSED:
            piece.piece, piece.type, piece.score = token, Type.UNUSED, float(score)
        else:
            piece.piece, piece.score = token, float(score)
    _set_gemma_specs(model, tokens, n_bytes=sum(k == BYTE for k in types))
    return model


def _set_gemma_specs(model: pb.ModelProto, tokens: list[str], n_bytes: int) -> None:
    """Gemma's trainer/normalizer settings; add_dummy_prefix stays off whatever the header's
    tokenizer.ggml.add_space_prefix says, since Gemma never prefixes a space."""
    t = model.trainer_spec
    t.model_type = pb.TrainerSpec.BPE
    t.vocab_size = len(tokens)
    t.byte_fallback = n_bytes == 256
    t.split_digits = True
    t.allow_whitespace_only_pieces = True
    t.split_by_whitespace = False
    t.pad_id, t.eos_id, t.bos_id = (tokens.index(p) for p in CONTROL_PIECES)
    t.unk_id = tokens.index(UNK_PIECE)
    t.pad_piece, t.eos_piece, t.bos_piece = CONTROL_PIECES
    t.unk_piece = UNK_PIECE
    n = model.normalizer_spec
    n.name = "identity"
    n.add_dummy_prefix = False
    n.remove_extra_whitespaces = False
    n.escape_whitespaces = True

"""Write a model as a GGUF file (architectures gemma, gemma2, gemma3) that llama.cpp and the tools
built on it read: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (what the `gguf` package can
quantise; it has no K-quant encoder). Norms are stored as 1 + w and in F32, as llama.cpp expects.

A model quantised here to int4 in groups of 32 is written as Q4_1 without re-rounding (Q4_1 is
the same code: w = d q + m per 32 values, the same nibble layout); any other combination goes
through the dequantised float weight, a block of rows at a time. An int4 model's int8 embedding
is written as Q8_0 when the file's type has fewer bits (as llama.cpp's own Q4_K_M file of
gemma3-270m stores token_embd), not re-rounded to 4 bits.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, InputError
from ..model import Gemma
from ..quant import scheme_of
from ..quant.modules import QuantEmbedding, QuantWeight
from ..tokenizer import Tokenizer
from .gguf_file import _LAYER_NAMES
from .tensors import check_output

TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1")
ARCH = {1: "gemma", 2: "gemma2", 3: "gemma3"}
_GGUF_NAMES = {ours: theirs for theirs, ours in _LAYER_NAMES.items()}
ROWS = 16384  # rows converted at a time: the 262144-row embedding never exists in float32 at once


def default_type(model: Gemma) -> str:
    """F32 for a float model; the GGUF type nearest the scheme for a quantised one."""
    scheme = scheme_of(model)
    return "F32" if scheme is None else {"int8": "Q8_0", "int4": "Q4_1"}[scheme.name]


def gguf_name(ours: str) -> str:
    if ours == "embed":
        return "token_embd.weight"
    _, i, *rest = ours.split(".")
    return f"blk.{i}.{_GGUF_NAMES['.'.join(rest)]}.weight"


def _lossless_q4_1(m: QuantWeight) -> np.ndarray:
    """Our int4 (groups of 32) as Q4_1 blocks: [d f16][m f16][16 bytes of nibbles] per group."""
    n, g = m.scales.shape
    d = m.scales.contiguous().view(torch.uint8).reshape(n, g, 2)
    z = m.zeros.contiguous().view(torch.uint8).reshape(n, g, 2)
    q = m.weight.reshape(n, g, 16)
    return torch.cat((d, z, q), dim=-1).reshape(n, g * 20).numpy()


def _encode(rows: torch.Tensor, kind: str) -> np.ndarray:
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    arr = rows.float().numpy()
    if kind == "F32":
        return arr
    if kind == "F16":
        return arr.astype(np.float16)
    return quantize(arr, GGMLQuantizationType[kind])


def _weight(m: torch.nn.Module, kind: str) -> np.ndarray:
    scheme = getattr(m, "scheme", None)
    if kind == "Q4_1" and scheme is not None and scheme.name == "int4" and scheme.group_size == 32:
        return _lossless_q4_1(m)
    n = m.weight.shape[0]
    parts = []
    for i in range(0, n, ROWS):
        rows = m.dequantized_rows(i, i + ROWS) if isinstance(m, QuantWeight) else m.weight[i:i + ROWS].detach()
        parts.append(_encode(rows, kind))
    return np.concatenate(parts)


def write_vocabulary(w, tok: Tokenizer) -> None:
    """The SentencePiece vocabulary the way llama.cpp's converter writes it (tokenizer_gguf.py reads it back)."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(tok.serialized_model_proto())
    kinds = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6}  # SentencePiece NORMAL..BYTE = GGUF's 1..6
    tokens, scores, types = [], [], []
    for p in proto.pieces:
        kind = kinds[p.type]
        tokens.append(p.piece.replace("\u2581", " ") if kind == 4 else p.piece)
        scores.append(-1000.0 if kind in (3, 4) else p.score)
        types.append(kind)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(tok.bos_id)
    w.add_eos_token_id(tok.eos_id)
    w.add_pad_token_id(tok.pad_id)
    w.add_unk_token_id(tok.unk_id)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(False)


@contextmanager
def atomic_file(path: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary sibling renamed to `path` only on success; an existing file needs `overwrite`."""
    if path.exists() and not overwrite:
        raise CheckpointError(f"{path}: exists; pass overwrite=True (--force) to replace it")
    if path.is_dir():
        check_output(path, overwrite)
        raise CheckpointError(f"{path}: is a directory; a GGUF export is one file")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot write here: {e.strerror}; nothing there was changed") from None
    finally:
        tmp.unlink(missing_ok=True)


def export_gguf(model: Gemma, path: str | Path, kind: str | None = None, tokenizer: Tokenizer | None = None,
                overwrite: bool = False) -> Path:
    """Write `model` (and `tokenizer`'s vocabulary) to the GGUF file `path`, atomically."""
    from gguf import GGUFWriter

    kind = kind or default_type(model)
    if kind not in TYPES:
        raise InputError(f"GGUF type {kind!r} cannot be written; choose one of: {', '.join(TYPES)}")
    cfg = model.config
    arch = ARCH[cfg.family]
    path = Path(path)
    with atomic_file(path, overwrite) as tmp:
        w = GGUFWriter(str(tmp), arch)
        w.add_name(cfg.name or "gemma")
        w.add_context_length(cfg.max_seq_len)
        w.add_embedding_length(cfg.d_model)
        w.add_block_count(cfg.n_layers)
        w.add_feed_forward_length(cfg.ffn_dim)
        w.add_head_count(cfg.n_heads)
        w.add_head_count_kv(cfg.n_kv_heads)
        w.add_key_length(cfg.head_dim)
        w.add_value_length(cfg.head_dim)
        w.add_layer_norm_rms_eps(cfg.norm_eps)
        w.add_rope_freq_base(cfg.rope_base)
        w.add_file_type({"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9,
                         "BF16": 32}[kind])
        if cfg.family >= 2:
            w.add_sliding_window(cfg.sliding_window)
        if cfg.family == 2:
            w.add_float32(f"{arch}.attn_logit_softcapping", cfg.attn_softcap)
            w.add_float32(f"{arch}.final_logit_softcapping", cfg.final_softcap)
        if tokenizer is not None:
            write_vocabulary(w, tokenizer)
        _tensors(w, model, kind)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file(progress=True)
        w.close()
    return path


def _tensor_type(m: torch.nn.Module, kind: str) -> str:
    """`kind`, except Q8_0 for an int8 embedding (an int4 model's default) in a 4- or 5-bit file."""
    int8_table = isinstance(m, QuantEmbedding) and m.scheme.name == "int8"
    return "Q8_0" if int8_table and kind[:2] in ("Q4", "Q5") else kind


def _tensors(w, model: Gemma, kind: str) -> None:
    from gguf import GGMLQuantizationType

    for name, m in model.named_modules():
        if hasattr(m, "weight") and not name.endswith("norm") and (isinstance(m, QuantWeight) or m.weight.dim() == 2):
            t = _tensor_type(m, kind)
            raw = None if t in ("F32", "F16") else GGMLQuantizationType[t]
            w.add_tensor(gguf_name(name), _weight(m, t), raw_dtype=raw)
    for name, t in model.state_dict().items():
        if name.endswith("norm.weight"):
            ours = name.removesuffix(".weight")
            key = "output_norm.weight" if ours == "final_norm" else gguf_name(ours)
            w.add_tensor(key, t.float().numpy() + 1.0)  # llama.cpp stores 1 + w

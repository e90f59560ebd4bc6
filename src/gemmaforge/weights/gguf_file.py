"""GGUF files (architectures gemma, gemma2, gemma3), dequantised to float32.

GGUF leaves some of Gemma's hyper-parameters implicit (Gemma 3's local RoPE base, the attention
scalar of the 27B sizes, the layer pattern); they come from the published presets. llama.cpp
stores every RMSNorm weight as 1 + w; that offset is undone here. Dequantised weights are cached
on disk so the second load takes about a second instead of several: one float32 file per GGUF
content (copies share it) under $GEMMAFORGE_CACHE/gguf (default ~/.cache/gemmaforge/gguf);
GEMMAFORGE_CACHE=off turns the cache off.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from ..config import ARCH_FAMILY, PRESETS, GemmaConfig
from ..errors import CheckpointError, ConfigError
from ..model import Gemma
from ..quant import Scheme
from ..quant.checkpoint import quantize_streamed
from .tensors import atomic_save_file, build_model, read_safetensors

_LAYER_NAMES = {
    "attn_q": "attn.q_proj", "attn_k": "attn.k_proj", "attn_v": "attn.v_proj", "attn_output": "attn.o_proj",
    "attn_q_norm": "attn.q_norm", "attn_k_norm": "attn.k_norm", "attn_norm": "input_norm",
    "ffn_norm": "pre_mlp_norm", "post_attention_norm": "post_attn_norm", "post_ffw_norm": "post_mlp_norm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def _reader(path: Path):
    import gguf

    try:
        return gguf.GGUFReader(str(path))
    except Exception as e:  # the reader raises ValueError, struct.error, IndexError... on bad bytes
        raise CheckpointError(f"{path}: not a readable GGUF file (truncated or corrupt?): "
                              f"{type(e).__name__}: {e}") from None


def _field(reader, key: str, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def config_from_gguf(reader, where: str) -> GemmaConfig:
    arch = _field(reader, "general.architecture")
    if arch not in ARCH_FAMILY:
        raise CheckpointError(f"{where}: architecture {arch!r} is not a Gemma text model "
                              f"(supported: {', '.join(ARCH_FAMILY)})")
    family = ARCH_FAMILY[arch]

    def meta(key: str, default=None):
        v = _field(reader, f"{arch}.{key}", default)
        if v is None:
            raise CheckpointError(f"{where}: GGUF metadata lacks {arch}.{key}")
        return v

    embd = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embd is None:
        raise CheckpointError(f"{where}: GGUF file has no token_embd.weight tensor")
    d_model, n_layers = int(meta("embedding_length")), int(meta("block_count"))
    # What GGUF does not store comes from the published model of the same family and size.
    published = next((c for c in PRESETS.values()
                      if (c.family, c.d_model, c.n_layers) == (family, d_model, n_layers)), None)
    base = published or PRESETS[{1: "gemma-2b", 2: "gemma2-2b", 3: "gemma3-1b"}[family]]
    head_dim = int(meta("attention.key_length", d_model // int(meta("attention.head_count"))))
    kw = dict(
        family=family, vocab_size=int(embd.shape[1]), d_model=d_model, n_layers=n_layers,
        n_heads=int(meta("attention.head_count")), n_kv_heads=int(meta("attention.head_count_kv")),
        head_dim=head_dim, ffn_dim=int(meta("feed_forward_length")),
        max_seq_len=int(meta("context_length")),
        norm_eps=float(f"{float(meta('attention.layer_norm_rms_epsilon')):.7g}"),  # undo float32 storage
        rope_base=float(meta("rope.freq_base", 10000.0)), name=_field(reader, "general.name", "") or "",
    )
    if family >= 2:
        window = int(meta("attention.sliding_window"))
        kw.update(post_norms=True, sliding_window=window,
                  query_pre_attn_scalar=published.query_pre_attn_scalar if published else head_dim)
        kw["layer_types"] = base.layer_types if published else (
            "".join("L" if i % 2 == 0 else "G" for i in range(n_layers)) if family == 2
            else "".join("G" if (i + 1) % 6 == 0 else "L" for i in range(n_layers)))
    if family == 2:
        kw.update(attn_softcap=float(meta("attn_logit_softcapping", 50.0)),
                  final_softcap=float(meta("final_logit_softcapping", 30.0)))
    if family == 3:
        kw.update(qk_norm=True, rope_local_base=base.rope_local_base,
                  rope_scaling=float(_field(reader, f"{arch}.rope.scaling.factor", None) or
                                     (published.rope_scaling if published else 1.0)))
    try:
        return GemmaConfig(**kw)
    except ConfigError as e:
        raise CheckpointError(f"{where}: {e}") from None


def _our_name(name: str) -> str | None:
    if name == "token_embd.weight":
        return "embed.weight"
    if name == "output_norm.weight":
        return "final_norm.weight"
    parts = name.split(".")
    if parts[0] == "blk" and len(parts) == 4 and parts[2] in _LAYER_NAMES:
        return f"layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}.{parts[3]}"
    return None


def iter_tensors(reader, where: str):
    """(our name, shape, read(start, stop)) for each tensor: `read` dequantises only those rows."""
    import gguf

    for t in reader.tensors:
        name = _our_name(t.name)
        if name is None:
            if t.name == "output.weight":
                raise CheckpointError(f"{where}: has a separate output.weight; Gemma ties it to the embedding")
            continue
        shape = tuple(int(n) for n in reversed(t.shape))

        def read(start: int, stop: int, t=t, name=name, shape=shape) -> torch.Tensor:
            data = t.data.reshape(shape[0], -1) if len(shape) == 2 else t.data
            try:
                arr = gguf.quants.dequantize(data[start:stop], t.tensor_type)
            except NotImplementedError:
                raise CheckpointError(f"{where}: tensor {t.name} has type {t.tensor_type.name}, "
                                      "which cannot be dequantised") from None
            tensor = torch.from_numpy(np.asarray(arr, dtype=np.float32).reshape(-1, *shape[1:]).copy())
            return tensor - 1.0 if name.endswith("norm.weight") else tensor  # llama.cpp stores 1 + w
        yield name, shape, read


def read_tensors(reader, where: str) -> dict[str, torch.Tensor]:
    return {name: read(0, shape[0]) for name, shape, read in iter_tensors(reader, where)}


def _cached_tensors(cache: Path):
    """The float cache entry read a slice at a time, in the form iter_tensors gives."""
    from safetensors import safe_open

    with safe_open(str(cache), "pt") as f:
        for name in f.keys():
            sl = f.get_slice(name)
            yield name, tuple(sl.get_shape()), lambda a, b, sl=sl: sl[a:b]


_CACHE_VERSION = "v3"  # bump when what a cache entry holds changes; entries of other versions are deleted


def _cache_dir() -> Path | None:
    """Where dequantised weights are kept, or None when GEMMAFORGE_CACHE is "off"."""
    root = os.environ.get("GEMMAFORGE_CACHE", str(Path.home() / ".cache" / "gemmaforge"))
    return None if root == "off" else Path(root) / "gguf"


def _cache_path(path: Path, cache_dir: Path) -> Path:
    """The entry for `path`'s content, so copies and moves of one GGUF share it. A full SHA-256 is
    exact and cheap enough: 0.18 s for the shipped 253 MB file, against 1.2 s to load the entry."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:  # hashlib.file_digest needs Python 3.11
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return cache_dir / f"{_CACHE_VERSION}-{digest.hexdigest()[:32]}.safetensors"


def _evict_other_versions(cache_dir: Path) -> None:
    """Delete entries no version of this code reads again (e.g. the old path-keyed ones, ~1 GB each)."""
    for entry in cache_dir.glob("*.safetensors"):
        if not entry.name.startswith(f"{_CACHE_VERSION}-"):
            entry.unlink(missing_ok=True)


def load(path: Path, dtype: torch.dtype | None, use_cache: bool = True, quantize: Scheme | None = None) -> Gemma:
    """The model in float (cached on disk), or quantised to `quantize` a block of rows at a time
    (from the float cache when there is one, else from the GGUF's own blocks)."""
    where = str(path)
    cache_dir = _cache_dir() if use_cache else None
    cache = _cache_path(path, cache_dir) if cache_dir else None
    if cache and cache.exists():
        try:
            from safetensors import safe_open

            with safe_open(str(cache), "pt") as f:
                cfg = GemmaConfig.from_json(f.metadata()["gemmaforge_config"])
            if quantize is not None:
                return quantize_streamed(cfg, _cached_tensors(cache), quantize, dtype or torch.float32, where)
            return build_model(cfg, read_safetensors(cache), where, dtype or torch.float32)
        except (CheckpointError, ConfigError, KeyError, OSError):
            cache.unlink(missing_ok=True)  # a stale or broken cache is rebuilt from the GGUF
    reader = _reader(path)
    cfg = config_from_gguf(reader, where)
    if quantize is not None:
        return quantize_streamed(cfg, iter_tensors(reader, where), quantize, dtype or torch.float32, where)
    state = read_tensors(reader, where)
    model = build_model(cfg, state, where, dtype or torch.float32)
    if cache:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_save_file(state, cache, metadata={"gemmaforge_config": json.dumps(cfg.to_dict())})
            _evict_other_versions(cache.parent)
        except OSError:
            pass  # caching is an optimisation; a read-only home must not stop loading
    return model

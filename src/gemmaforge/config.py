"""One configuration dataclass for every Gemma family member, with named presets.

Gemma 2 and 3 are not separate models: they are this config with post-norms, soft-caps,
sliding-window layers or QK-norm switched on.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

#: Architecture names -> Gemma family: GGUF's `general.architecture` and Hugging Face's
#: `model_type` (Gemma 3's text model is "gemma3_text"; "gemma3" also names its multimodal wrapper).
ARCH_FAMILY = {"gemma": 1, "gemma2": 2, "gemma3": 3, "gemma3_text": 3}


@dataclass(frozen=True)
class GemmaConfig:
    """Hyper-parameters of a Gemma decoder. Field names follow the Gemma papers."""

    family: int = 1  # 1, 2 or 3: chooses the chat-token ids and the defaults below
    vocab_size: int = 256000
    d_model: int = 2048
    n_layers: int = 18
    n_heads: int = 8
    n_kv_heads: int = 1
    head_dim: int = 256
    ffn_dim: int = 16384  # width of one GeGLU branch
    max_seq_len: int = 8192
    norm_eps: float = 1e-6
    rope_base: float = 10000.0
    # Gemma 1 scales scores by head_dim**-0.5; Gemma 2/3 by query_pre_attn_scalar**-0.5.
    query_pre_attn_scalar: float | None = None
    post_norms: bool = False  # Gemma 2/3: RMSNorm after attention and MLP as well as before
    qk_norm: bool = False  # Gemma 3: RMSNorm on each head's q and k before RoPE
    attn_softcap: float | None = None  # Gemma 2: 50.0, applied before the mask
    final_softcap: float | None = None  # Gemma 2: 30.0
    sliding_window: int | None = None  # tokens a local layer sees, the current one included
    # One letter per layer: "G" global attention, "L" sliding-window (local) attention.
    layer_types: str = ""
    rope_local_base: float = 10000.0  # Gemma 3 local layers
    rope_scaling: float = 1.0  # linear position scaling of global layers (Gemma 3 4B+: 8)
    name: str = ""

    def __post_init__(self) -> None:
        if not self.layer_types:
            object.__setattr__(self, "layer_types", "G" * self.n_layers)
        self.validate()

    # -- derived -------------------------------------------------------------------------
    @property
    def attn_scale(self) -> float:
        scalar = self.query_pre_attn_scalar if self.query_pre_attn_scalar is not None else self.head_dim
        return float(scalar) ** -0.5

    def is_local(self, layer: int) -> bool:
        return self.layer_types[layer] == "L"

    # -- checks --------------------------------------------------------------------------
    def validate(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(f"invalid GemmaConfig{f' {self.name!r}' if self.name else ''}: {msg}")

        need(self.family in (1, 2, 3), f"family must be 1, 2 or 3, got {self.family}")
        for f in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "ffn_dim",
                  "max_seq_len"):
            v = getattr(self, f)
            need(isinstance(v, int) and not isinstance(v, bool) and v > 0,
                 f"{f} must be a positive integer, got {v!r}")
        need(self.n_heads % self.n_kv_heads == 0,
             f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")
        need(self.head_dim % 2 == 0, f"head_dim ({self.head_dim}) must be even for RoPE")
        need(self.norm_eps > 0, f"norm_eps must be positive, got {self.norm_eps}")
        need(len(self.layer_types) == self.n_layers and set(self.layer_types) <= {"G", "L"},
             f"layer_types must be {self.n_layers} letters of G/L, got {self.layer_types!r}")
        need("L" not in self.layer_types or (self.sliding_window or 0) > 0,
             "local ('L') layers need a positive sliding_window")
        for f in ("attn_softcap", "final_softcap", "query_pre_attn_scalar"):
            v = getattr(self, f)
            need(v is None or v > 0, f"{f} must be positive or None, got {v}")
        need(self.rope_base > 0 and self.rope_local_base > 0 and self.rope_scaling > 0,
             "RoPE bases and scaling must be positive")

    # -- presets and serialisation -------------------------------------------------------
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GemmaConfig:
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
        return dataclasses.replace(PRESETS[name], **overrides)

    @staticmethod
    def presets() -> list[str]:
        return sorted(PRESETS)

    def replace(self, **changes: Any) -> GemmaConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GemmaConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown GemmaConfig fields: {', '.join(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> GemmaConfig:
        p = Path(text_or_path)
        text = p.read_text() if not str(text_or_path).lstrip().startswith("{") else str(text_or_path)
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config JSON{f' in {p}' if p.exists() else ''} is malformed: {e}") from None
        return cls.from_dict(d)


def _gemma2_layers(n: int) -> str:
    return "".join("L" if i % 2 == 0 else "G" for i in range(n))


def _gemma3_layers(n: int) -> str:
    return "".join("G" if (i + 1) % 6 == 0 else "L" for i in range(n))


def _gemma1(name: str, **kw: Any) -> GemmaConfig:
    return GemmaConfig(family=1, name=name, **kw)


def _gemma2(name: str, n_layers: int, **kw: Any) -> GemmaConfig:
    base = dict(vocab_size=256000, head_dim=256, max_seq_len=8192, query_pre_attn_scalar=256,
                post_norms=True, attn_softcap=50.0, final_softcap=30.0, sliding_window=4096)
    return GemmaConfig(family=2, name=name, n_layers=n_layers, layer_types=_gemma2_layers(n_layers),
                       **{**base, **kw})


def _gemma3(name: str, n_layers: int, **kw: Any) -> GemmaConfig:
    base = dict(vocab_size=262208, head_dim=256, max_seq_len=131072, query_pre_attn_scalar=256,
                post_norms=True, qk_norm=True, sliding_window=1024, rope_base=1_000_000.0,
                rope_local_base=10_000.0, rope_scaling=8.0)
    return GemmaConfig(family=3, name=name, n_layers=n_layers, layer_types=_gemma3_layers(n_layers),
                       **{**base, **kw})


_SMALL3 = dict(vocab_size=262144, max_seq_len=32768, sliding_window=512, rope_scaling=1.0)

PRESETS: dict[str, GemmaConfig] = {c.name: c for c in [
    _gemma1("gemma-2b", d_model=2048, n_layers=18, n_heads=8, n_kv_heads=1, ffn_dim=16384),
    _gemma1("gemma-7b", d_model=3072, n_layers=28, n_heads=16, n_kv_heads=16, ffn_dim=24576),
    _gemma2("gemma2-2b", 26, d_model=2304, n_heads=8, n_kv_heads=4, ffn_dim=9216),
    _gemma2("gemma2-9b", 42, d_model=3584, n_heads=16, n_kv_heads=8, ffn_dim=14336),
    _gemma2("gemma2-27b", 46, d_model=4608, n_heads=32, n_kv_heads=16, head_dim=128, ffn_dim=36864,
            query_pre_attn_scalar=144),
    _gemma3("gemma3-270m", 18, d_model=640, n_heads=4, n_kv_heads=1, ffn_dim=2048, **_SMALL3),
    _gemma3("gemma3-1b", 26, d_model=1152, n_heads=4, n_kv_heads=1, ffn_dim=6912, **_SMALL3),
    _gemma3("gemma3-4b", 34, d_model=2560, n_heads=8, n_kv_heads=4, ffn_dim=10240),
    _gemma3("gemma3-12b", 48, d_model=3840, n_heads=16, n_kv_heads=8, ffn_dim=15360),
    _gemma3("gemma3-27b", 62, d_model=5376, n_heads=32, n_kv_heads=16, head_dim=128, ffn_dim=21504,
            query_pre_attn_scalar=168),
    # Tiny configs for tests and demos: every architectural switch of their family, at toy size.
    _gemma1("tiny-gemma-mqa", vocab_size=512, d_model=64, n_layers=2, n_heads=4, n_kv_heads=1,
            head_dim=32, ffn_dim=128, max_seq_len=256),
    _gemma1("tiny-gemma-mha", vocab_size=512, d_model=64, n_layers=2, n_heads=4, n_kv_heads=4,
            head_dim=24, ffn_dim=128, max_seq_len=256),
    _gemma2("tiny-gemma2", 4, vocab_size=512, d_model=64, n_heads=4, n_kv_heads=2, head_dim=32,
            ffn_dim=128, max_seq_len=256, query_pre_attn_scalar=24, sliding_window=8),
    _gemma3("tiny-gemma3", 7, vocab_size=512, d_model=64, n_heads=4, n_kv_heads=2, head_dim=32,
            ffn_dim=128, max_seq_len=256, sliding_window=8, rope_scaling=8.0),
]}

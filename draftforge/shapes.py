"""`ModelShape`: the one description of a decoder-only transformer's dimensions.

Counts follow the transformers implementations exactly (LlamaForCausalLM, MistralForCausalLM,
Qwen2ForCausalLM, OPTForCausalLM), so that `param_count()` equals the number of parameters of the
instantiated model (tests check this on the meta device for every catalog target).
Units: parameters and bytes are integers, FLOPs are floats; no I/O here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from draftforge.errors import DraftforgeError

Family = Literal["llama", "mistral", "qwen2", "opt"]
FAMILIES: tuple[str, ...] = ("llama", "mistral", "qwen2", "opt")

#: bytes per parameter / cache element for each storage dtype draftforge knows.
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4,
    "float32": 4,
    "bf16": 2,
    "bfloat16": 2,
    "fp16": 2,
    "float16": 2,
    "fp8": 1,
    "int8": 1,
    "int4": 0.5,
}


def dtype_bytes(dtype: str) -> float:
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise DraftforgeError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPE_BYTES)}") from None


@dataclass(frozen=True)
class ModelShape:
    """Dimensions of a decoder-only transformer.

    `family` picks the architecture (and the transformers config class): llama/mistral/qwen2 are
    gated (SwiGLU) MLPs with RMSNorm; qwen2 adds biases on q, k, v; opt is the two-matrix ReLU MLP
    with biases, LayerNorm and learned positions.
    """

    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    family: Family = "llama"
    tie_embeddings: bool = False
    max_positions: int = 4096
    #: OPT-350M projects 512-wide embeddings to its 1024 hidden size; None means "= hidden_size".
    embed_dim: int | None = None

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise DraftforgeError("invalid model shape: " + "; ".join(problems))

    # ---- validation -------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Every reason this shape is invalid (empty when valid)."""
        out: list[str] = []
        for name in (
            "num_layers",
            "hidden_size",
            "num_heads",
            "num_kv_heads",
            "intermediate_size",
            "vocab_size",
            "max_positions",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                out.append(f"{name} must be a positive integer, got {value!r}")
        if out:
            return out
        if self.family not in FAMILIES:
            out.append(f"family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        if self.hidden_size % self.num_heads:
            out.append(f"num_heads ({self.num_heads}) must divide hidden_size ({self.hidden_size})")
        if self.num_heads % self.num_kv_heads:
            out.append(f"num_kv_heads ({self.num_kv_heads}) must divide num_heads ({self.num_heads})")
        if self.family == "opt" and self.num_kv_heads != self.num_heads:
            out.append("opt has no grouped-query attention: num_kv_heads must equal num_heads")
        if self.embed_dim is not None and (self.family != "opt" or self.embed_dim <= 0):
            out.append("embed_dim (a projected embedding width) is only supported for the opt family")
        return out

    # ---- derived dimensions -----------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def gated_mlp(self) -> bool:
        """True for SwiGLU (three matrices), False for OPT's two-matrix ReLU MLP."""
        return self.family != "opt"

    @property
    def mlp(self) -> str:
        return "gated" if self.gated_mlp else "standard"

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    # ---- parameters -------------------------------------------------------------------------
    def attention_params(self) -> int:
        h, kv = self.hidden_size, self.kv_dim
        weights = h * h + 2 * h * kv + h * h  # q, k, v, o
        if self.family == "opt":
            return weights + 3 * h + h  # biases on q, k, v and out_proj
        if self.family == "qwen2":
            return weights + h + 2 * kv  # biases on q, k, v only
        return weights

    def mlp_params(self) -> int:
        h, i = self.hidden_size, self.intermediate_size
        if self.gated_mlp:
            return 3 * h * i  # gate, up, down
        return 2 * h * i + i + h  # fc1, fc2 with biases

    def norm_params_per_layer(self) -> int:
        return 4 * self.hidden_size if self.family == "opt" else 2 * self.hidden_size

    def layer_params(self) -> int:
        """Parameters of one decoder layer (attention + MLP + its norms)."""
        return self.attention_params() + self.mlp_params() + self.norm_params_per_layer()

    def embedding_params(self) -> int:
        """Token embeddings (+ OPT's learned positions and projections)."""
        e = self.embed_dim or self.hidden_size
        n = self.vocab_size * e
        if self.family == "opt":
            n += (self.max_positions + 2) * self.hidden_size  # OPT offsets positions by 2
            if self.embed_dim and self.embed_dim != self.hidden_size:
                n += 2 * self.embed_dim * self.hidden_size  # project_in, project_out
        return n

    def final_norm_params(self) -> int:
        if self.family == "opt":
            # OPT-350M (post-LN, projected embeddings) has no final layer norm.
            return 0 if self._opt_post_ln else 2 * self.hidden_size
        return self.hidden_size

    def lm_head_params(self) -> int:
        """Untied LM head parameters (0 when tied to the embeddings)."""
        return 0 if self.tie_embeddings else self.vocab_size * (self.embed_dim or self.hidden_size)

    def param_count(self) -> int:
        """Total parameters, as `sum(p.numel() for p in model.parameters())` reports them."""
        return (
            self.num_layers * self.layer_params()
            + self.embedding_params()
            + self.final_norm_params()
            + self.lm_head_params()
        )

    def non_embedding_params(self) -> int:
        return self.num_layers * self.layer_params() + self.final_norm_params()

    @property
    def _opt_post_ln(self) -> bool:
        return self.family == "opt" and self.embed_dim is not None and self.embed_dim != self.hidden_size

    # ---- bytes ------------------------------------------------------------------------------
    def layer_weight_bytes(self, dtype: str = "bf16") -> float:
        return self.layer_params() * dtype_bytes(dtype)

    def lm_head_weight_bytes(self, dtype: str = "bf16") -> float:
        """Bytes the LM head reads every step (tied heads read the embedding matrix)."""
        return self.vocab_size * (self.embed_dim or self.hidden_size) * dtype_bytes(dtype)

    def weight_bytes(self, dtype: str = "bf16") -> float:
        return self.param_count() * dtype_bytes(dtype)

    def kv_bytes_per_token(self, dtype: str = "bf16") -> float:
        """KV-cache bytes one token occupies across all layers (keys and values)."""
        return 2 * self.num_layers * self.kv_dim * dtype_bytes(dtype)

    # ---- FLOPs ------------------------------------------------------------------------------
    def layer_flops_per_token(self, context: int) -> float:
        """FLOPs of one layer for one new token attending to `context` cached tokens.

        2 per multiply-add for every weight matrix, plus QK^T and attention-weighted V:
        2 * 2 * context * num_heads * head_dim.
        """
        matmul = 2 * (self.attention_params() + self.mlp_params())
        attention = 4 * context * self.hidden_size
        return float(matmul + attention)

    def flops_per_token(self, context: int = 0) -> float:
        """Forward FLOPs for one token (all layers and the LM head)."""
        head = 2 * self.vocab_size * (self.embed_dim or self.hidden_size)
        return self.num_layers * self.layer_flops_per_token(context) + head

    # ---- conversions ------------------------------------------------------------------------
    def replace(self, **changes: Any) -> ModelShape:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["embed_dim"] is None:
            del d["embed_dim"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelShape:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise DraftforgeError(f"unknown model shape keys: {', '.join(unknown)}")
        return cls(**d)

    def describe(self) -> str:
        """Short human label, e.g. 'L5 H4096 A32/32 I11008'."""
        return (
            f"L{self.num_layers} H{self.hidden_size} A{self.num_heads}/{self.num_kv_heads} "
            f"I{self.intermediate_size}"
        )

    def to_hf_config(self, **overrides: Any):
        """A transformers config for this shape (LlamaConfig, MistralConfig, Qwen2Config or OPTConfig)."""
        import transformers

        if self.family == "opt":
            kwargs: dict[str, Any] = dict(
                vocab_size=self.vocab_size,
                hidden_size=self.hidden_size,
                num_hidden_layers=self.num_layers,
                num_attention_heads=self.num_heads,
                ffn_dim=self.intermediate_size,
                max_position_embeddings=self.max_positions,
                word_embed_proj_dim=self.embed_dim or self.hidden_size,
                do_layer_norm_before=not self._opt_post_ln,
                tie_word_embeddings=True,
            )
            kwargs.update(overrides)
            return transformers.OPTConfig(**kwargs)
        cls = {
            "llama": transformers.LlamaConfig,
            "mistral": transformers.MistralConfig,
            "qwen2": transformers.Qwen2Config,
        }[self.family]
        kwargs = dict(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads,
            max_position_embeddings=self.max_positions,
            tie_word_embeddings=self.tie_embeddings,
        )
        kwargs.update(overrides)
        return cls(**kwargs)

    @classmethod
    def from_hf_config(cls, config: Any) -> ModelShape:
        """Read a transformers config (object or config.json dict) of a supported family."""
        get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
        model_type = get("model_type")
        if model_type == "opt":
            hidden = get("hidden_size")
            proj = get("word_embed_proj_dim") or hidden
            return cls(
                num_layers=get("num_hidden_layers"),
                hidden_size=hidden,
                num_heads=get("num_attention_heads"),
                num_kv_heads=get("num_attention_heads"),
                intermediate_size=get("ffn_dim"),
                vocab_size=get("vocab_size"),
                family="opt",
                tie_embeddings=True,
                max_positions=get("max_position_embeddings"),
                embed_dim=proj if proj != hidden else None,
            )
        family = {"llama": "llama", "mistral": "mistral", "qwen2": "qwen2"}.get(model_type or "")
        if family is None:
            raise DraftforgeError(
                f"unsupported model_type {model_type!r}; draftforge models llama, mistral, qwen2 and opt"
            )
        heads = get("num_attention_heads")
        head_dim = get("head_dim")
        hidden = get("hidden_size")
        if head_dim is not None and head_dim * heads != hidden:
            raise DraftforgeError(
                f"head_dim {head_dim} x heads {heads} != hidden {hidden}: such models are not supported"
            )
        return cls(
            num_layers=get("num_hidden_layers"),
            hidden_size=hidden,
            num_heads=heads,
            num_kv_heads=get("num_key_value_heads") or heads,
            intermediate_size=get("intermediate_size"),
            vocab_size=get("vocab_size"),
            family=family,  # type: ignore[arg-type]
            tie_embeddings=bool(get("tie_word_embeddings", False)),
            max_positions=get("max_position_embeddings") or 4096,
        )

"""The normalized model: what vLLM derives from config.json, as plain frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AttentionLayer:
    """One attention module that owns KV cache.

    kind: "full" (MHA/GQA/MQA), "sliding" (window), "chunked" (Llama 4 local chunks),
    "mla" (one latent vector), "cross" (encoder-decoder cross attention).
    num_kv_heads is the model total, before tensor parallelism divides it.
    """

    index: int
    kind: str
    num_kv_heads: int
    head_size: int
    head_size_v: int
    window: int | None = None
    chunk: int | None = None


@dataclass(frozen=True)
class MambaLayer:
    """One state-space / linear-attention module (fixed-size state per request).

    shapes(tp) is computed by kv.specs from `params`; kind names the state calculator
    ("mamba1", "mamba2", "gdn", "linear", "short_conv", "kda").
    """

    index: int
    kind: str
    params: tuple[tuple[str, int], ...]


Layer = AttentionLayer | MambaLayer


@dataclass(frozen=True)
class ModelArch:
    model_type: str
    architectures: tuple[str, ...]
    num_hidden_layers: int
    layers: tuple[Layer, ...]           # every KV-owning module, in layer order
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    vocab_size: int
    tie_word_embeddings: bool
    config_dtype: str | None            # as written (torch_dtype / dtype), normalized name
    derived_max_len: int                # vLLM's derived max_model_len (after rope scaling)
    derived_max_len_key: str            # which key it came from
    default_max_len: int                # what vLLM uses when no --max-model-len is given
    model_max_length: int | None        # config's model_max_length (allows longer user values)
    kv_scheme: str | None = None        # checkpoint KV quantization that turns kv dtype auto into this
    quantization: str | None = None     # weight quantization method, informational for KV
    use_mla: bool = False
    is_encoder_decoder: bool = False
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    inferred: tuple[str, ...] = field(default=())   # fields kvfit filled in, said in the output

    @property
    def attention_layers(self) -> tuple[AttentionLayer, ...]:
        return tuple(x for x in self.layers if isinstance(x, AttentionLayer))

    @property
    def mamba_layers(self) -> tuple[MambaLayer, ...]:
        return tuple(x for x in self.layers if isinstance(x, MambaLayer))

    @property
    def family(self) -> str:
        kinds = {x.kind for x in self.layers}
        if not kinds:
            return "attention-free"
        if self.mamba_layers:
            return "mamba-hybrid" if self.attention_layers else "mamba"
        if "mla" in kinds:
            return "mla"
        if kinds & {"sliding", "chunked"}:
            return "sliding-window" if "sliding" in kinds else "chunked-local"
        if "cross" in kinds:
            return "encoder-decoder"
        heads = {x.num_kv_heads for x in self.attention_layers}
        if heads == {self.num_attention_heads}:
            return "dense MHA"
        if heads == {1}:
            return "dense MQA"
        return "dense GQA"

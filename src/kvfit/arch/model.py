"""The normalized model: what vLLM derives from config.json, as plain frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class AttentionLayer:
    """One attention module that owns KV cache.

    kind: "full" (MHA/GQA/MQA), "sliding" (window), "chunked" (Llama 4 local chunks),
    "mla" (one latent vector), "indexer" (DeepSeek-V3.2 sparse-attention indexer cache: uint8,
    not TP-split), "cross" (encoder-decoder cross attention).
    num_kv_heads is the model total, before tensor parallelism divides it.
    index is the decoder layer the module belongs to (pipeline parallelism splits by it).
    draft marks speculative-decoding layers (MTP module or draft model), registered after the
    target's layers.
    """

    index: int
    kind: str
    num_kv_heads: int
    head_size: int
    head_size_v: int
    window: int | None = None
    chunk: int | None = None
    draft: bool = False


@dataclass(frozen=True)
class MambaLayer:
    """One state-space / linear-attention module (fixed-size state per request).

    kind names the state calculator in kv.specs ("mamba1", "mamba2", "gdn"); params holds the
    config values it needs (model totals, before tensor parallelism divides them).
    """

    index: int
    kind: str
    params: tuple[tuple[str, int], ...]
    draft: bool = False

    def param(self, key: str) -> int:
        return dict(self.params)[key]


Layer = AttentionLayer | MambaLayer


# --- the parameter-bearing structure (weights from config.json alone) --------------------------------

@dataclass(frozen=True)
class Linear:
    """`count` weight matrices of [out, inp] (one per expert for routed experts), as the checkpoint
    stores them. role says what they belong to ("attn", "mla", "indexer", "mamba", "gdn", "mlp",
    "experts", "shared", "router", "lm_head", "vision", "audio", "projector"); name is a
    checkpoint-style module name (HF naming) that quantization ignore lists are matched against."""

    role: str
    out: int
    inp: int
    count: int
    name: str

    @property
    def params(self) -> int:
        return self.out * self.inp * self.count


@dataclass(frozen=True)
class Tensor:
    """Parameters that are not quantizable linear weights: embeddings, norms, biases, convolutions,
    SSM parameters, routers' correction biases. dtype "F32" marks tensors vLLM keeps in float32."""

    role: str
    params: int
    name: str
    dtype: str = ""


@dataclass(frozen=True)
class QuantScheme:
    """A checkpoint's weight quantization, read from quantization_config / hf_quant_config.json.

    weight: storage of a quantized linear: "fp8", "int" (packed int4/int8 with group scales),
    "w8a8" (int8 with per-channel scales), "nvfp4", "mxfp4", "mxfp8", "bnb4", "bnb8"; None when
    kvfit cannot read the scheme (then the weights are sized unquantized and a note says so).
    strategy: "tensor" | "channel" | "group" | "block" (scale granularity).
    experts_only: only routed experts are quantized (MXFP4 gpt-oss, experts_int8, moe_wna16).
    """

    method: str
    weight: str | None
    bits: int = 16
    strategy: str = "tensor"
    group_size: int = 0
    block: tuple[int, int] | None = None
    zero_point: bool = False
    desc_act: bool = False
    static_input: bool = False
    double_quant: bool = False
    experts_only: bool = False
    lm_head: bool = False
    towers: bool = True                 # vision/audio tower linears quantized unless ignored
    ignore: tuple[str, ...] = ()
    substring_ignore: bool = False      # AWQ/GPTQ/bitsandbytes: `entry in module_name` (is_layer_skipped
                                        # match_mode "substring"); others match whole name segments
    label: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParamLayout:
    """Every parameter vLLM loads for the model, derived from config.json: linear weights (quantizable)
    and the rest. summary says how the model was read (layer kinds, experts, towers)."""

    linears: tuple[Linear, ...]
    tensors: tuple[Tensor, ...]
    summary: str
    declared_total: int | None = None       # total_params / num_parameters written in config.json
    notes: tuple[str, ...] = ()
    attention_modules: int = 0              # standard (non-MLA) attention modules: KV-cache scales

    @property
    def total(self) -> int:
        return sum(x.params for x in self.linears) + sum(x.params for x in self.tensors)


@dataclass(frozen=True)
class ModelArch:
    model_type: str
    architectures: tuple[str, ...]
    num_hidden_layers: int
    layers: tuple[Layer, ...]           # every KV-owning module, in vLLM's registration order
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
    # What ModelConfig itself reports (model level, used by vLLM's hybrid block-size alignment and
    # by the config-reader comparison): get_head_size(), get_total_num_kv_heads(), get_sliding_window().
    head_size: int = 0
    num_kv_heads: int = 0
    sliding_window: int | None = None
    attention_chunk_size: int | None = None   # ModelConfig.attention_chunk_size (HMA rules)
    mamba_ssm_dtype: str | None = None        # the model's own default for mamba_ssm_cache_dtype
    mamba_ssm_dtype_in_config: bool = False   # config.json names it (else mamba_ssm_dtype is the class fallback)
    mtp_layers: int = 0                       # num_nextn_predict_layers / mtp_num_hidden_layers
    gdn_layer_types: bool = False             # layer_types names linear_attention (CPU GDN rule)
    encoder_item_tokens: int = 0              # encoder-decoder: encoder tokens of one input (Whisper 1500)
    # Weights from config.json alone (arch/params.py, arch/quant.py); None only for hand-built archs.
    params: ParamLayout | None = None
    quant: QuantScheme | None = None

    @property
    def attention_layers(self) -> tuple[AttentionLayer, ...]:
        return tuple(x for x in self.layers if isinstance(x, AttentionLayer))

    @property
    def mamba_layers(self) -> tuple[MambaLayer, ...]:
        return tuple(x for x in self.layers if isinstance(x, MambaLayer))

    @property
    def is_hybrid(self) -> bool:
        """Attention and mamba layers together (vLLM's ModelConfig.is_hybrid)."""
        return bool(self.mamba_layers) and bool(self.attention_layers)

    @property
    def length_from_config(self) -> bool:
        """False when config.json has no length key: vLLM then takes any user max_model_len as is
        (config/model.py::_get_and_verify_max_len) and assumes 2048 otherwise."""
        return not self.derived_max_len_key.startswith("default")

    @property
    def is_attention_free(self) -> bool:
        return not self.attention_layers

    def with_draft(self, layers: tuple[Layer, ...]) -> "ModelArch":
        """This model with speculative-decoding layers registered after its own."""
        return replace(self, layers=self.layers + tuple(replace(x, draft=True) for x in layers))

    @property
    def label(self) -> str:
        """The architecture in words, for people: attention kind, MoE, hybrid layer counts, towers."""
        fam = self.family
        if fam == "mamba-hybrid":
            core = f"hybrid: {len(self.mamba_layers)} mamba + {len(self.attention_layers)} attention layers"
        elif fam.startswith("dense ") and self.num_experts:
            core = fam[len("dense "):]
        elif fam == "mla":
            core = "MLA"
        else:
            core = {"mla": "MLA", "mamba": "mamba (state space)"}.get(fam, fam)
        if self.num_experts:
            active = f", {self.experts_per_token} active" if self.experts_per_token else ""
            core = f"MoE ({self.num_experts} experts{active}), {core}"
        names = " ".join(self.architectures)
        if any(k in names for k in ("ForConditionalGeneration", "VL", "Vision", "Llava")) and \
                not self.is_encoder_decoder:
            core += ", with a vision/audio tower"
        return core

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

"""What `--quantization` does to the weights vLLM holds, checked against the checkpoint as vLLM checks it.

vLLM 0.32 `config/model.py::ModelConfig._verify_quantization`:
* a checkpoint with a `quantization_config` (or ModelOpt's hf_quant_config.json) fixes the method: a
  `--quantization` that differs is refused ("Quantization method specified in the model config (X) does not
  match the quantization method specified in the `quantization` argument (Y)"), except the overrides vLLM
  resolves first (an AWQ checkpoint runs as awq, awq_marlin, auto_awq or marlin; GPTQ as gptq, gptq_marlin,
  auto_gptq or marlin: `override_quantization_method` in layers/quantization/*);
* a method vLLM does not know is refused ("Unknown quantization method");
* on an unquantized checkpoint only the online methods load (`model_loader/weight_utils.py::get_quant_config`:
  the others look for the checkpoint's quantization config and fail without one).

kvfit models the online FP8 and INT8 weight methods (linear layers at 1 byte per parameter plus their
scales, embeddings, LM head and norms kept in the model dtype, as vLLM's online FP8 keeps them); any other
online method is refused with exit 2 rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..arch.model import ModelArch
from ..errors import BadFlag, NotModelled
from .weights import FLOATING, Inventory

# layers/quantization/__init__.py QuantizationMethods (0.32.0), plus names older releases had.
QUANTIZATION_METHODS = frozenset("""awq auto_awq fp8 fbgemm_fp8 fp_quant modelopt modelopt_fp4 modelopt_mxfp8
modelopt_mixed auto_gptq gptq gptq_marlin awq_marlin humming compressed-tensors experts_int8 quark moe_wna16
torchao inc mxfp4 gpt_oss_mxfp4 deepseek_v4_fp8 online fp8_per_tensor fp8_per_block fp8_per_channel
int8_per_channel_weight_only nvfp4_per_token mxfp8 bitsandbytes marlin gptq_marlin_24 aqlm deepspeedfp tpu_int8
ptpc_fp8 gguf hqq qqq squeezellm ipex neuron_quant bitblas gptq_bitblas awq_triton rtn petit_nvfp4
cpu_awq""".split())
# Online methods kvfit models: weight bytes per parameter of the linear layers (scales added below).
ONLINE_MODELLED = {"fp8": 1, "fp8_per_tensor": 1, "fp8_per_channel": 1, "fp8_per_block": 1,
                   "int8_per_channel_weight_only": 1, "fbgemm_fp8": 1, "ptpc_fp8": 1}
# Online methods vLLM loads on an unquantized checkpoint that kvfit does not size yet.
ONLINE_OTHER = {"experts_int8", "mxfp8", "nvfp4_per_token", "online", "torchao", "bitsandbytes", "rtn"}
# A checkpoint quantized one way also runs under these names (override_quantization_method).
ACCEPTS = {"awq": {"awq", "awq_marlin", "auto_awq", "marlin", "cpu_awq"},
           "gptq": {"gptq", "gptq_marlin", "auto_gptq", "marlin", "gptq_marlin_24", "gptq_bitblas"},
           "mxfp4": {"mxfp4", "gpt_oss_mxfp4"},
           "modelopt": {"modelopt", "modelopt_fp4", "modelopt_mixed", "modelopt_mxfp8"}}
# Checkpoints whose method vLLM keeps whatever --quantization says: their override_quantization_method returns
# the checkpoint's method for any user value (modelopt.py: FP8 -> "modelopt", NVFP4 -> "modelopt_fp4";
# mxfp4.py: gpt-oss -> "gpt_oss_mxfp4"), and _verify_quantization then takes the override.
CHECKPOINT_DECIDES = {"modelopt", "modelopt_fp4", "modelopt_mixed", "mxfp4", "gpt_oss_mxfp4"}
FOUR_BIT = {"awq", "awq_marlin", "auto_awq", "gptq", "gptq_marlin", "auto_gptq", "marlin"}


@dataclass(frozen=True)
class Loaded:
    """The weights a launch loads: the inventory after --quantization, and what kvfit said about it."""

    inventory: Inventory
    notes: tuple[str, ...] = ()


def check_quantization(arch: ModelArch, method: str | None, model_id: str) -> str | None:
    """The method vLLM runs (None: unquantized), or the error vLLM would raise, as BadFlag / NotModelled."""
    ckpt = (arch.quantization or "").lower() or None
    if method is None:
        return ckpt
    m = method.strip().lower()
    if m not in QUANTIZATION_METHODS:
        raise BadFlag(f"--quantization {method!r} is not a quantization method vLLM knows (vLLM refuses it: "
                      "\"Unknown quantization method\")",
                      "Common ones: fp8 (online on any checkpoint), awq / gptq (4-bit checkpoints).",
                      flag="quantization")
    if ckpt is not None:
        if m == ckpt or m in ACCEPTS.get(ckpt, ()):
            return m
        if ckpt in CHECKPOINT_DECIDES:
            return ckpt
        raise BadFlag(f"--quantization {m}: {model_id}'s config.json says its weights are {ckpt}; vLLM refuses "
                      f"the launch (\"Quantization method specified in the model config ({ckpt}) does not match "
                      f"the quantization method specified in the `quantization` argument ({m})\")",
                      f"Drop --quantization (vLLM reads {ckpt} from the checkpoint).", flag="quantization")
    if m in ONLINE_MODELLED:
        return m
    if m in ONLINE_OTHER:
        raise NotModelled(f"--quantization {m} on an unquantized checkpoint: vLLM quantizes at load, but kvfit "
                          "does not size that method yet", "kvfit models --quantization fp8 (and its per-tensor, "
                          "per-channel and per-block forms) for online quantization.", flag="quantization")
    raise BadFlag(f"--quantization {m} needs a checkpoint quantized with {m}: {model_id}'s config.json has no "
                  "quantization_config, so vLLM cannot load it that way",
                  f"Use a checkpoint quantized with {m}, or --quantization fp8 to quantize this one at load.",
                  flag="quantization")


def _unquantized_params(arch: ModelArch, floating: int) -> int:
    """Parameters vLLM leaves in the model dtype under online weight quantization: the embedding and LM head
    (vocabulary x hidden) and the norms (two per decoder layer and a final one)."""
    emb = arch.vocab_size * arch.hidden_size * (1 if arch.tie_word_embeddings else 2)
    norms = (2 * arch.num_hidden_layers + 1) * arch.hidden_size
    return min(floating, emb + norms)


def online_quantized(arch: ModelArch, inv: Inventory, method: str) -> Inventory:
    """An unquantized checkpoint's floating linear weights at 1 byte per parameter (FP8 or INT8), with a
    float32 scale per output channel for the per-channel methods (a rounding error for per-tensor and
    128x128 blocks); embeddings, LM head and norms stay in the model dtype."""
    floating = sum(c for d, c in inv.params_by_dtype.items() if d in FLOATING)
    emb = _unquantized_params(arch, floating)
    linear = max(0, floating - emb)
    counts = {d: c for d, c in inv.params_by_dtype.items() if d not in FLOATING}
    counts["BF16"] = counts.get("BF16", 0) + emb
    key = "I8" if method.startswith("int8") else "F8_E4M3"
    counts[key] = counts.get(key, 0) + linear
    label = ("INT8" if key == "I8" else "FP8") + f" weights quantized at load (--quantization {method}): linear " \
        "layers at 1 byte per parameter, embeddings, LM head and norms in the model dtype"
    return Inventory(counts, f"{inv.source}; {label}", inv.estimated)


def four_bit_checkpoint(arch: ModelArch, inv: Inventory) -> Inventory:
    """What a 4-bit AWQ/GPTQ checkpoint of this model holds (group size 128): 0.5 byte per linear parameter,
    a 16-bit scale per group and a packed 4-bit zero point per group (qweight int32 [in, out/8], scales fp16
    [in/128, out], qzeros int32 [in/128, out/8]; layers/quantization/awq.py). Used only to propose such a
    checkpoint as an alternative: a launch of *this* checkpoint with --quantization awq is refused above."""
    floating = sum(c for d, c in inv.params_by_dtype.items() if d in FLOATING)
    emb = _unquantized_params(arch, floating)
    linear = max(0, floating - emb)
    counts = {d: c for d, c in inv.params_by_dtype.items() if d not in FLOATING}
    counts["BF16"] = counts.get("BF16", 0) + emb
    counts["F4"] = counts.get("F4", 0) + linear
    counts["F16"] = counts.get("F16", 0) + linear // 128
    counts["I32"] = counts.get("I32", 0) + linear // 1024
    return Inventory(counts, f"{inv.source}; a 4-bit AWQ/GPTQ checkpoint (group 128) of the same model",
                     inv.estimated)

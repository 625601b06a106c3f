"""The config-only weight estimate against vLLM's own model classes, config by config.

weights_runner.py builds the model vLLM 0.32 would build for each real config.json in tests/data/models
and each tiny engine config in tests/data/engine - on the meta device, so a 671B model costs nothing -
with every quantization method's create_weights, and counts its parameters. kvfit's estimate from the
same config.json (memory/weights.py::estimate_inventory), plus the vocabulary padding vLLM adds to the
embedding and LM head (VocabParallelEmbedding pads to 64 rows), must give the same number of values,
and the same number of quantized values (fp8, packed int32, uint8) dtype by dtype.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine_oracle import require_vllm
from kvfit.arch.normalize import normalize
from kvfit.memory.weights import estimate_inventory, pad_vocab

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data"

# Configs vLLM's CPU build cannot instantiate, or kvfit refuses on purpose.
NOT_BUILT = {
    "bert_encoder_only": "encoder-only: kvfit refuses it (no KV cache)",
    "google__gemma-4-26B-A4B": "Gemma 4's vision tower is not in kvfit's config-only estimate (arch/towers.py)",
    "nvidia__Gemma-4-31B-IT-NVFP4": "NVFP4 has no CPU kernel; Gemma 4's vision tower is not in the estimate",
    "kimi_linear_kda": "vLLM's Kimi-Linear module (vllm/models/kimi_k3/nvidia) imports cutlass: not built on CPU",
    "deepseek-ai__DeepSeek-V3.2": "vLLM's CPU platform has no sparse-attention (indexer) backend",
    "zai-org__GLM-5": "vLLM's CPU platform has no sparse-attention (indexer) backend",
    "nvidia__NVIDIA-Nemotron-3-Nano-30B-A3B-BF16": "vLLM's CPU fused MoE has no non-gated (relu2) experts",
    "microsoft__Phi-3-small-8k-instruct": "custom code (auto_map): vLLM asks for trust_remote_code",
    "nvidia__Llama-3_3-Nemotron-Super-49B-v1": "custom code (auto_map): vLLM asks for trust_remote_code",
    "MiniMax-AI__MiniMax-M1": "vLLM 0.32 no longer serves MiniMax-M1 (registry.py _PREVIOUSLY_SUPPORTED_MODELS: "
                              "until v0.23.0); its sizes are derived by hand in tests/kv/test_minimax_plamo2.py",
}
MOE_FIRST = DATA / "engine" / "qwen3_next_hybrid"        # initializes the expert-parallel group
DIRS = sorted({p.parent for p in (DATA / "models").glob("*/config.json")} |
              {p.parent for p in (DATA / "engine").glob("*/config.json")})
BUILT = [d for d in DIRS if d.name not in NOT_BUILT]
QUANTIZED = {"float8_e4m3fn": "F8_E4M3", "int32": "I32", "uint8": "U8", "int8": "I8"}


# quantization_config variants on the tiny Llama engine config (hidden 256, q 256, k/v 128, MLP 512, 3 layers):
# each quantization method's create_weights, as vLLM 0.32 runs it on this config. (NVFP4 has no CPU
# kernel and GPTQ 8-bit no CPU Marlin: their storage is derived by hand in tests/memory.)
_W = {"targets": ["Linear"]}
QUANT_VARIANTS = {
    "fp8_tensor": {"quant_method": "fp8", "activation_scheme": "dynamic"},
    "fp8_static": {"quant_method": "fp8", "activation_scheme": "static"},
    "fp8_block": {"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128]},
    "awq": {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"},
    "gptq": {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True},
    "ct_w4a16": {"quant_method": "compressed-tensors", "format": "pack-quantized", "ignore": ["lm_head"],
                 "config_groups": {"g": dict(_W, weights={"num_bits": 4, "type": "int", "strategy": "group",
                                                         "group_size": 128, "symmetric": True})}},
    "ct_w4a16_asym": {"quant_method": "compressed-tensors", "format": "pack-quantized", "ignore": ["lm_head"],
                      "config_groups": {"g": dict(_W, weights={"num_bits": 4, "type": "int", "strategy": "group",
                                                              "group_size": 128, "symmetric": False})}},
    "ct_w8a8": {"quant_method": "compressed-tensors", "format": "int-quantized", "ignore": ["lm_head"],
                "config_groups": {"g": dict(_W, input_activations={"num_bits": 8, "type": "int", "dynamic": True,
                                                                   "strategy": "token", "symmetric": True},
                                            weights={"num_bits": 8, "type": "int", "strategy": "channel",
                                                     "symmetric": True})}},
    "ct_fp8": {"quant_method": "compressed-tensors", "format": "float-quantized", "ignore": ["lm_head"],
               "config_groups": {"g": dict(_W, input_activations={"num_bits": 8, "type": "float", "dynamic": True,
                                                                  "strategy": "token"},
                                           weights={"num_bits": 8, "type": "float", "strategy": "channel",
                                                    "symmetric": True})}},
    "ct_fp8_block": {"quant_method": "compressed-tensors", "format": "float-quantized", "ignore": ["lm_head"],
                     "config_groups": {"g": dict(_W, input_activations={"num_bits": 8, "type": "float",
                                                                        "dynamic": True, "strategy": "group",
                                                                        "group_size": 128},
                                                 weights={"num_bits": 8, "type": "float", "strategy": "block",
                                                          "block_structure": [128, 128], "symmetric": True})}},
}
MODELOPT_VARIANTS = {"modelopt_fp8": "FP8", "modelopt_fp8_pb": "FP8_PB_WO"}


def _quant_dirs(root: Path) -> list[Path]:
    base = json.loads((DATA / "engine" / "llama_gqa" / "config.json").read_text())
    out = []
    for name, qc in QUANT_VARIANTS.items():
        d = root / f"quant_{name}"
        d.mkdir()
        (d / "config.json").write_text(json.dumps(dict(base, quantization_config=qc)))
        out.append(d)
    for name, algo in MODELOPT_VARIANTS.items():
        d = root / f"quant_{name}"
        d.mkdir()
        (d / "config.json").write_text(json.dumps(base))
        (d / "hf_quant_config.json").write_text(json.dumps({"producer": {"name": "modelopt"}, "quantization": {
            "quant_algo": algo, "kv_cache_quant_algo": None, "exclude_modules": ["lm_head"]}}))
        out.append(d)
    return out


@pytest.fixture(scope="module")
def quant_dirs(tmp_path_factory) -> list[Path]:
    return _quant_dirs(tmp_path_factory.mktemp("quant"))


@pytest.fixture(scope="module")
def vllm_counts(quant_dirs) -> dict[str, dict]:
    require_vllm()                                   # skip without vLLM; fail under CI
    order = [MOE_FIRST] + [d for d in BUILT if d != MOE_FIRST] + quant_dirs
    p = subprocess.run([sys.executable, str(HERE / "weights_runner.py"), *map(str, order)],
                       capture_output=True, text=True, timeout=1800,
                       env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
    assert p.returncode == 0 and lines, p.stderr[-3000:]
    return json.loads(lines[-1])


@pytest.mark.parametrize("model_dir", BUILT, ids=[d.name for d in BUILT])
def test_estimate_equals_the_parameters_vllm_creates(vllm_counts, model_dir):
    _compare(vllm_counts, model_dir)


@pytest.mark.parametrize("variant", [*QUANT_VARIANTS, *MODELOPT_VARIANTS])
def test_quantized_storage_equals_vllm_dtype_by_dtype(vllm_counts, quant_dirs, variant):
    """Every dtype, scales and KV-cache scales included: fp8.py, auto_awq.py, auto_gptq.py,
    compressed_tensors schemes, modelopt.py create_weights."""
    model_dir = next(d for d in quant_dirs if d.name == f"quant_{variant}")
    est = _compare(vllm_counts, model_dir)
    names = {"bfloat16": "BF16", "float32": "F32", "float8_e4m3fn": "F8_E4M3", "int32": "I32", "int8": "I8",
             "int64": "I64", "uint8": "U8"}
    got = {names[k]: v for k, v in vllm_counts[model_dir.name]["params"].items()}
    assert est.params_by_dtype == got


def _compare(vllm_counts, model_dir: Path):
    got = vllm_counts[model_dir.name]
    assert "params" in got, got
    config = json.loads((model_dir / "config.json").read_text())
    hq = model_dir / "hf_quant_config.json"
    arch = normalize(config, hf_quant_config=json.loads(hq.read_text()) if hq.exists() else None)
    est = estimate_inventory(arch)
    padding = (pad_vocab(arch.vocab_size) - arch.vocab_size) * arch.hidden_size * (1 if arch.tie_word_embeddings
                                                                                    else 2)
    assert est.total_params + padding == sum(got["params"].values()), (est.params_by_dtype, got)
    for torch_name, ours in QUANTIZED.items():
        assert est.params_by_dtype.get(ours, 0) == got["params"].get(torch_name, 0), (est.params_by_dtype, got)
    return est

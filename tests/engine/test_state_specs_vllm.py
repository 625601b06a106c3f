"""Per-layer KV numbers and state sizes against vLLM's own objects, for the families of issue 13 item 5 that
the CPU engine cannot run or that exist only as full-size configs.

* Gemma 4 (real configs in tests/data/models): vLLM's per-layer architecture config
  (transformers_utils/model_arch_config_convertor.py -> ModelArchitectureConfig[i], what gemma4.py's
  decoder layers read through config.per_layer_config) gives each layer's KV heads and head size; the
  last num_kv_shared_layers layers get no KV cache spec (gpu_model_runner.get_kv_cache_spec skips layers
  with kv_sharing_target_layer_name). kvfit's KV-owning layers must be exactly the others, with those numbers.
* Kimi-Linear (vLLM's module imports cutlass, so the CPU engine cannot build it): the KDA layer's
  MambaSpec page, built by vLLM's MambaSpec from KimiLinearForCausalLM.get_mamba_state_shape_from_config and
  the dtypes kimi_gdn_linear_attn.py asks MambaStateDtypeCalculator.kda_state_dtype for, equals kvfit's.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from kvfit.arch.normalize import normalize
from kvfit.kv.layout import KVOptions, layer_spec

DATA = Path(__file__).resolve().parent.parent / "data"
GEMMA4 = [DATA / "models" / "google__gemma-4-26B-A4B", DATA / "models" / "nvidia__Gemma-4-31B-IT-NVFP4",
          DATA / "engine" / "gemma4_per_layer_heads", DATA / "engine" / "gemma4_kv_shared"]

pytestmark = pytest.mark.usefixtures("vllm_oracle")


def _vllm_layers(d: Path) -> tuple[list[tuple[int, int, int | None]], int]:
    """(KV heads, head size, sliding window) per decoder layer as vLLM reads them, and num_kv_shared_layers."""
    import vllm.config  # noqa: F401  (vLLM's own import order: the convertor module is imported by config)
    from vllm.transformers_utils.config import get_config, get_hf_text_config
    from vllm.transformers_utils.model_arch_config_convertor import (MODEL_ARCH_CONFIG_CONVERTORS,
                                                                      ModelArchConfigConvertorBase)

    hf = get_config(str(d), trust_remote_code=False)
    text = get_hf_text_config(hf)
    arch = MODEL_ARCH_CONFIG_CONVERTORS.get(hf.model_type, ModelArchConfigConvertorBase)(hf, text).convert()
    out = []
    for i in range(arch.total_num_hidden_layers):
        layer = arch[i]
        window = text.sliding_window if text.layer_types[i] == "sliding_attention" else None
        out.append((layer.total_num_kv_heads, layer.head_size, window))
    return out, getattr(text, "num_kv_shared_layers", 0) or 0


@pytest.mark.parametrize("d", GEMMA4, ids=[p.name for p in GEMMA4])
def test_gemma4_layers_as_vllm_builds_them(d: Path):
    theirs, shared = _vllm_layers(d)
    owning = theirs[: len(theirs) - shared]
    arch = normalize(json.loads((d / "config.json").read_text()))
    ours = [(x.num_kv_heads, x.head_size, x.window) for x in arch.attention_layers]
    assert ours == owning
    assert [x.index for x in arch.attention_layers] == list(range(len(owning)))
    assert all(x.head_size_v == x.head_size for x in arch.attention_layers)    # K=V layers still store V


def test_kimi_linear_kda_state_page_equals_vllm():
    import torch
    from vllm.model_executor.layers.mamba.mamba_utils import MambaStateDtypeCalculator
    from vllm.models.kimi_k3.nvidia.model import KimiLinearForCausalLM
    from vllm.transformers_utils.config import get_config
    from vllm.v1.kv_cache_interface import MambaSpec

    d = DATA / "engine" / "kimi_linear_kda"
    hf = get_config(str(d), trust_remote_code=False)
    arch = normalize(json.loads((d / "config.json").read_text()))
    kda = arch.mamba_layers
    assert [x.index for x in kda] == [i for i in range(hf.num_hidden_layers) if hf.is_kda_layer(i)]
    assert [x.index for x in arch.attention_layers] == [i for i in range(hf.num_hidden_layers)
                                                        if not hf.is_kda_layer(i)]
    for tp in (1, 2, 4):
        vc = SimpleNamespace(model_config=SimpleNamespace(hf_config=hf),
                             parallel_config=SimpleNamespace(tensor_parallel_size=tp), speculative_config=None,
                             cache_config=SimpleNamespace(use_kda_recoverssm=False))
        shapes = KimiLinearForCausalLM.get_mamba_state_shape_from_config(vc)
        # kimi_gdn_linear_attn.py::KimiGatedDeltaNetAttention.get_state_dtype: kda_state_dtype(model dtype,
        # mamba_cache_dtype) with the ssm dtype left "auto" -> the recurrent state is float32
        dtypes = MambaStateDtypeCalculator.kda_state_dtype(torch.bfloat16, "auto")
        theirs = MambaSpec(block_size=16, shapes=tuple(shapes), dtypes=dtypes).page_size_bytes
        opt = KVOptions(block_size=16, kv_dtype_bytes=2, tensor_parallel_size=tp, mamba_conv_bytes=2,
                        mamba_ssm_bytes=2)
        assert layer_spec(kda[0], opt, 16, 16).page_size_bytes == theirs

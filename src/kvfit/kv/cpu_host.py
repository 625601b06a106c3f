"""vLLM 0.32's CPU backend, as a pure model of the host it runs on: which ISA path vLLM takes, and what its
CPU platform then decides about the KV cache. Standard library only: no torch, no vllm.

vLLM branches on three torch probes, never on the CPU model name:

  ``torch.cpu._is_amx_tile_supported()``     (AMX tiles)
      platforms/cpu.py::CpuPlatform.get_attn_backend_cls: MLA models use the AMX_MLA backend, otherwise
      the reference CPU_MLA backend; CpuPlatform.check_and_update_config: CPU_MLA forces block_size 16
      and turns chunked prefill and prefix caching off (max_num_batched_tokens = max(max_model_len,
      2048)); AMX_MLA keeps all three. v1/attention/backends/cpu_attn.py::_get_attn_isa: bf16
      attention with a block size divisible by 32 runs the "amx" kernel.
  ``torch.cpu._is_avx512_bf16_supported()``  (AVX512-BF16)
      CpuPlatform.check_and_update_config: the "accelerated GDN" rule resets mamba_ssm_cache_dtype to
      float32 unless it is float16/bfloat16 and platforms/cpu.py::_cpu_mamba_backend says "gdn".
      CpuPlatform.import_kernels loads the ``_C`` kernel library (built for AVX512-BF16).
  ``torch.cpu._is_avx512_supported()``       (AVX-512 without BF16)
      CpuPlatform.import_kernels loads ``_C_AVX512``; otherwise ``_C_AVX2``. No KV decision depends on it.

The paths kvfit names (``--cpu-isa``), from the richest down:

  amx          AMX tiles + AVX512-BF16 (Xeon Sapphire Rapids and later): AMX_MLA; ssm state reset rule.
  avx512_bf16  AVX512-BF16 without AMX (Xeon Cooper Lake, AMD Zen 4/5): CPU_MLA; ssm state reset rule.
  avx512       AVX-512 without BF16 (Xeon Skylake-SP .. Ice Lake): CPU_MLA; ssm state kept as asked.
  avx2         neither (AVX2-only x86, and non-x86 hosts, where all three probes are False).

torch answers from CPUID through pytorch/cpuinfo (src/x86/isa.c: ``amx_tile`` and ``avx512bf16`` are set
only when the OS enables the AVX-512 register state); kvfit reads the same features from the kernel's
``flags`` line in /proc/cpuinfo (``amx_tile``, ``avx512_bf16``, ``avx512f``...). The two can differ on a VM
whose CPUID advertises AMX to a kernel that does not enable it: /proc/cpuinfo then hides ``amx_tile``,
torch still reports it, and vLLM picks AMX kernels that die with SIGILL; ``--cpu-isa amx`` predicts what
such an engine sizes.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

# --cpu-isa values, richest first (see the module docstring for what each path means to vLLM).
CPU_ISAS = ("amx", "avx512_bf16", "avx512", "avx2")
CPU_ISA_HELP = (
    "With --device cpu: the CPU path vLLM takes (default: this machine's, from /proc/cpuinfo). "
    "amx: AMX + AVX512-BF16 (Sapphire Rapids+): MLA on AMX_MLA (block 128, chunked prefill and prefix "
    "caching kept), mamba ssm state float32 unless a float16/bfloat16 state vLLM's accelerated GDN path "
    "accepts; avx512_bf16: AVX512-BF16 without AMX (Cooper Lake, Zen 4/5): MLA on CPU_MLA (block 16, no "
    "chunked prefill or prefix caching, max_num_batched_tokens = max(max_model_len, 2048)), same ssm rule; "
    "avx512: AVX-512 without BF16: CPU_MLA, ssm state as asked; avx2: neither (also non-x86 CPUs): as avx512.")

# v1/attention/backends/cpu_attn.py::CPUAttentionBackend.get_supported_kernel_block_sizes (MultipleOf(32)),
# mla/amx_mla.py (MultipleOf(32)) and mla/cpu_mla.py ([16]): the smallest kernel block of each backend.
CPU_ATTN_KERNEL_BLOCK = 32
AMX_MLA_KERNEL_BLOCK = 32
CPU_MLA_BLOCK = 16                   # platforms/cpu.py: "The CPU MLA decode kernel only compiles with block_size=16"
DEEPSEEK_V4_BLOCK = 256              # platforms/cpu.py: DeepseekV4SparseMLABackend / IndexerBackend
DEFAULT_CPU_BLOCK = 128              # platforms/cpu.py: `elif not cache_config.user_specified_block_size`
DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048   # config/scheduler.py::SchedulerConfig.DEFAULT_MAX_NUM_BATCHED_TOKENS


@dataclass(frozen=True)
class CpuHost:
    """The answers of the torch probes vLLM's CPU platform reads (the defaults: an AVX512-BF16 x86 host,
    kvfit's assumption when nothing is known)."""

    amx_tile: bool = False           # torch.cpu._is_amx_tile_supported()
    avx512_bf16: bool = True         # torch.cpu._is_avx512_bf16_supported()
    avx512: bool = True              # torch.cpu._is_avx512_supported()
    x86: bool = True                 # CpuPlatform.get_cpu_architecture() == CpuArchEnum.X86

    @property
    def isa(self) -> str:
        """The --cpu-isa name of this host's path."""
        if self.x86 and self.amx_tile and self.avx512_bf16:
            return "amx"
        if self.avx512_bf16:
            return "avx512_bf16"
        if self.x86 and self.avx512:
            return "avx512"
        return "avx2"

    @property
    def amx(self) -> bool:
        """AMX as vLLM's MLA checks it: `get_cpu_architecture() == X86 and torch.cpu._is_amx_tile_supported()`."""
        return self.x86 and self.amx_tile

    @classmethod
    def from_isa(cls, isa: str) -> "CpuHost":
        if isa not in CPU_ISAS:
            raise ValueError(f"unknown CPU ISA path {isa!r} (one of {', '.join(CPU_ISAS)})")
        return cls(amx_tile=isa == "amx", avx512_bf16=isa in ("amx", "avx512_bf16"),
                   avx512=isa != "avx2", x86=True)

    @classmethod
    def from_flags(cls, flags: set[str] | frozenset[str], machine: str = "x86_64") -> "CpuHost":
        """From the kernel's /proc/cpuinfo flag names. torch.cpu._is_avx512_supported() asks cpuinfo for
        the AVX-512 foundation, BW, DQ and VL subsets; every AVX-512 server CPU has all four."""
        x86 = machine.lower() in ("x86_64", "amd64", "i386", "i686", "x86")
        if not x86:       # torch's probes are x86 CPUID checks: False elsewhere
            return cls(amx_tile=False, avx512_bf16=False, avx512=False, x86=False)
        return cls(amx_tile="amx_tile" in flags, avx512_bf16="avx512_bf16" in flags,
                   avx512={"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= set(flags), x86=True)


def read_cpuinfo_flags(path: str = "/proc/cpuinfo") -> set[str] | None:
    """The first `flags` line of /proc/cpuinfo (every core lists the same); None when unreadable."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        return None
    return set()


def detect(path: str = "/proc/cpuinfo", machine: str | None = None) -> CpuHost:
    """This machine's path, without importing torch. Unreadable /proc/cpuinfo (not Linux): kvfit's default
    host (AVX512-BF16 x86), as before."""
    flags = read_cpuinfo_flags(path)
    if flags is None:
        return CpuHost()
    return CpuHost.from_flags(flags, machine or platform.machine() or "x86_64")


def detect_cpu_isa() -> str:
    """What vLLM's CPU platform would see on this host, as a --cpu-isa name (read from /proc/cpuinfo)."""
    return detect().isa


def from_settings(settings) -> CpuHost:
    """The host a kvfit Settings describes (Settings.cpu_amx, Settings.cpu_avx512_bf16)."""
    return CpuHost(amx_tile=bool(settings.cpu_amx), avx512_bf16=bool(settings.cpu_avx512_bf16),
                   avx512=bool(settings.cpu_amx or settings.cpu_avx512_bf16))


# --- what vLLM's CPU platform decides ------------------------------------------------------------

def mla_backend(host: CpuHost, *, use_mla: bool, attention_backend: str | None = None) -> str | None:
    """platforms/cpu.py::CpuPlatform.get_attn_backend_cls (and check_and_update_config's amx_mla_enabled):
    MLA runs on AMX_MLA when the host is x86 with AMX tiles, unless --attention-backend CPU_MLA asks for the
    reference kernel; otherwise on CPU_MLA. None for models without MLA (CPU_ATTN)."""
    if not use_mla:
        return None
    if host.amx and attention_backend != "CPU_MLA":
        return "AMX_MLA"
    return "CPU_MLA"


def reference_mla(host: CpuHost, *, use_mla: bool, model_type: str = "", attention_backend: str | None = None) -> bool:
    """check_and_update_config's `reference_cpu_mla_enabled` (DeepSeek-V4 has its own branch)."""
    return model_type != "deepseek_v4" and mla_backend(host, use_mla=use_mla, attention_backend=attention_backend) == "CPU_MLA"


def block_size(host: CpuHost, *, use_mla: bool, user_block_size: int | None, model_type: str = "",
               attention_backend: str | None = None) -> int:
    """cache_config.block_size after CpuPlatform.check_and_update_config (before the hybrid alignment):
    the reference CPU MLA kernel forces 16 over any user value, DeepSeek-V4 forces 256, otherwise the
    user's --block-size or 128. AMX_MLA keeps 128 / the user's value."""
    if reference_mla(host, use_mla=use_mla, model_type=model_type, attention_backend=attention_backend):
        return CPU_MLA_BLOCK
    if model_type == "deepseek_v4":
        return DEEPSEEK_V4_BLOCK
    return user_block_size or DEFAULT_CPU_BLOCK


def mla_disables_chunking(host: CpuHost, *, use_mla: bool, model_type: str = "",
                          attention_backend: str | None = None) -> bool:
    """The end of check_and_update_config: "MLA is enabled on a non-GPU platform; forcing chunked prefill and
    prefix caching to be disabled" unless `amx_mla_or_dsv4_enabled` (AMX_MLA, or DeepSeek-V4 on AMX).
    When true, max_num_batched_tokens = mla_max_num_batched_tokens(max_model_len), over any user value."""
    if not use_mla:
        return False
    if model_type == "deepseek_v4":
        return not host.amx
    return mla_backend(host, use_mla=True, attention_backend=attention_backend) != "AMX_MLA"


def mla_max_num_batched_tokens(max_model_len: int) -> int:
    """check_and_update_config: max(model_config.max_model_len, SchedulerConfig.DEFAULT_MAX_NUM_BATCHED_TOKENS)."""
    return max(max_model_len, DEFAULT_MAX_NUM_BATCHED_TOKENS)


def kernel_block_base(host: CpuHost, *, use_mla: bool, attention_backend: str | None = None) -> int:
    """The smallest kernel block of the attention backend vLLM picks (what
    platforms/interface.py::_align_hybrid_block_size rounds to): CPU_ATTN and AMX_MLA take multiples of 32,
    the reference CPU_MLA kernel only 16."""
    backend = mla_backend(host, use_mla=use_mla, attention_backend=attention_backend)
    if backend == "CPU_MLA":
        return CPU_MLA_BLOCK
    return AMX_MLA_KERNEL_BLOCK if backend == "AMX_MLA" else CPU_ATTN_KERNEL_BLOCK


def ssm_cache_dtype(host: CpuHost, requested: str, *, gdn_backend: bool) -> str:
    """mamba_ssm_cache_dtype after CpuPlatform.check_and_update_config ("Accelerated GDN uses AMX tiles or
    AVX-512BF16 VDPBF16PS"): on an AVX512-BF16 host every value but float32 is reset to float32, unless it is
    float16/bfloat16 and platforms/cpu.py::_cpu_mamba_backend returns "gdn". Hosts without AVX512-BF16 keep
    the value. `requested` is the value after the model's own hook (models/config.py: NemotronH float32,
    Qwen3.5 its mamba_ssm_dtype); "auto" stays "auto" (the state then takes the conv dtype)."""
    if not host.avx512_bf16 or requested == "float32":
        return requested
    if requested in ("float16", "bfloat16") and gdn_backend:
        return requested
    return "float32"


def cpu_mamba_backend_is_gdn(*, layer_types_linear_attention: bool, state_kinds: set[str] | frozenset[str],
                             requested: str) -> bool:
    """platforms/cpu.py::_cpu_mamba_backend == "gdn": the transformers text config's `layer_types` contains
    "linear_attention", the model class's get_mamba_state_dtype_from_config returns two dtypes (conv, ssm)
    and the ssm one equals the asked float16/bfloat16. Mamba1, Mamba2 and GatedDeltaNet states are (conv,
    ssm) with ssm = mamba_ssm_cache_dtype (model_executor/layers/mamba/mamba_utils.py::
    MambaStateDtypeCalculator._mamba_state_dtype), so for them the answer is the layer_types test alone."""
    if requested not in ("float16", "bfloat16") or not layer_types_linear_attention:
        return False
    return bool(state_kinds) and set(state_kinds) <= {"mamba1", "mamba2", "gdn"}


def attention_isa(host: CpuHost, *, dtype: str, block_size: int, head_size: int | None,
                  kv_cache_dtype: str = "auto") -> str:
    """v1/attention/backends/cpu_attn.py::_get_attn_isa on x86: the kernel CPU_ATTN runs ("amx", "vec",
    "vec16"), or "unsupported" where it raises (an fp8 KV cache needs AVX-512 or AMX, and a head size
    divisible by 32). Decided when the attention metadata builders are made, after the KV cache is sized."""
    fp8 = kv_cache_dtype.startswith("fp8") or kv_cache_dtype == "int8"
    if head_size is not None and head_size % 32 != 0 and head_size % 16 == 0:
        return "unsupported" if fp8 else "vec16"
    if not host.x86:
        return "neon" if not fp8 else "unsupported"
    if fp8 and not host.amx and not host.avx512:
        return "unsupported"
    if host.amx and dtype == "bfloat16" and block_size % 32 == 0:
        return "amx"
    return "vec" if block_size % 32 == 0 else "vec16"


def kernel_library(host: CpuHost) -> str:
    """platforms/cpu.py::CpuPlatform.import_kernels on x86: the compiled kernel module vLLM loads."""
    if not host.x86:
        return "_C"
    if host.avx512:
        return "_C" if host.avx512_bf16 else "_C_AVX512"
    return "_C_AVX2"


def layer_types_name_linear_attention(arch) -> bool:
    """Whether the transformers config vLLM reads lists "linear_attention" in `layer_types` (config.json's own
    layer_types, or the names transformers gives the model type's state layers: arch.families)."""
    from ..arch import families as F

    return bool(arch.mamba_layers) and (arch.gdn_layer_types or arch.model_type in F.LINEAR_ATTENTION_LAYER_TYPES)


def ssm_cache_dtype_for(host: CpuHost, arch, requested: str) -> str:
    """ssm_cache_dtype() for a model: whether _cpu_mamba_backend says "gdn" follows from its architecture."""
    gdn = cpu_mamba_backend_is_gdn(layer_types_linear_attention=layer_types_name_linear_attention(arch),
                                   state_kinds={x.kind for x in arch.mamba_layers}, requested=requested)
    return ssm_cache_dtype(host, requested, gdn_backend=gdn)

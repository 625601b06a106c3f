"""What kvfit's memory model reads from a launch: the modelled vLLM arguments, typed; notes on the rest."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..errors import BadInput
from .grammar import _HUMAN_INT, MODELLED, NOT_MODELLED, is_known
from .model import POSITIONAL, Expr, Launch
from ..units import parse_human_int, parse_max_model_len


@dataclass(frozen=True)
class EngineArgs:
    """The launch's arguments kvfit's memory model reads, typed; and notes on everything else."""

    model: str | None
    settings: dict[str, Any]              # Settings field -> value (only those the launch sets)
    quantization: str | None
    cpu_offload_gb: float
    revision: str | None
    entrypoint: str                       # "serve" | "llm"
    config: str | None                    # a --config file the launch names
    notes: tuple[str, ...]


_SETTINGS_KEYS = {
    "max-model-len": "max_model_len", "gpu-memory-utilization": "gpu_memory_utilization",
    "tensor-parallel-size": "tensor_parallel_size", "pipeline-parallel-size": "pipeline_parallel_size",
    "dtype": "dtype", "kv-cache-dtype": "kv_cache_dtype", "block-size": "block_size", "max-num-seqs": "max_num_seqs",
    "max-num-batched-tokens": "max_num_batched_tokens", "enforce-eager": "enforce_eager",
    "kv-cache-memory-bytes": "kv_cache_memory_bytes", "num-gpu-blocks-override": "num_gpu_blocks_override",
    "disable-sliding-window": "disable_sliding_window",
}


def _settings_fields() -> set[str]:
    from ..settings import Settings

    return set(Settings.__dataclass_fields__)


# LoRA slots are modelled by plan.py when Settings carries them (memory/weights.py::lora_bytes_per_gpu).
for _key, _attr in (("enable-lora", "enable_lora"), ("max-loras", "max_loras"), ("max-lora-rank", "max_lora_rank")):
    if _attr in _settings_fields():
        _SETTINGS_KEYS[_key] = _attr
        MODELLED.add(_key)
        NOT_MODELLED.discard(_key)


def _flag(key: str) -> str:
    return "--" + key


def _typed(key: str, v: Any) -> Any:
    flag = _flag(key)
    if key in ("enforce-eager", "disable-sliding-window", "enable-lora"):
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return v.strip().lower() in ("true", "1", "yes", "on")
        raise BadInput(f"launch: {flag} takes no value (got {v!r})")
    if key == "max-model-len":
        if isinstance(v, bool):
            raise BadInput(f"launch: {flag} must be a number, -1 or auto (got {v!r})")
        if isinstance(v, int):
            return v if v == -1 or v > 0 else parse_max_model_len(str(v))
        return parse_max_model_len(str(v))
    if key == "gpu-memory-utilization" or key == "cpu-offload-gb":
        if isinstance(v, bool):
            raise BadInput(f"launch: {flag} must be a number (got {v!r})")
        try:
            return float(v)
        except (TypeError, ValueError):
            raise BadInput(f"launch: {flag} must be a number (got {v!r})") from None
    if key in ("dtype", "kv-cache-dtype", "quantization", "revision", "device", "config", "model"):
        if v is None:
            return None
        if not isinstance(v, str):
            raise BadInput(f"launch: {flag} must be a string (got {v!r})")
        return v
    # whole numbers
    if isinstance(v, bool) or v is None:
        raise BadInput(f"launch: {flag} must be a whole number (got {v!r})")
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        if key in _HUMAN_INT:
            return parse_human_int(v, flag)
        try:
            return int(v.strip())
        except ValueError:
            raise BadInput(f"launch: {flag} must be a whole number (got {v!r})") from None
    raise BadInput(f"launch: {flag} must be a whole number (got {v!r})")


def engine_args(launch: Launch) -> EngineArgs:
    """The launch as kvfit's model reads it. Later occurrences win; non-literal Python values and flags kvfit
    does not model are noted, never guessed."""
    values: dict[str, Any] = {}
    notes: list[str] = []
    seen_notes: set[str] = set()

    def note(text: str) -> None:
        if text not in seen_notes:
            seen_notes.add(text)
            notes.append(text)

    for a in launch.args:
        shown = a.spelling if a.spelling and a.spelling not in (POSITIONAL,) and not a.spelling.startswith("#") \
            else _flag(a.key)
        if a.key in ("", "*", "**"):
            note(f"{'argument' if a.key == '' else a.key + 'args'} {a.value if not isinstance(a.value, Expr) else a.value.src!s}: "
                 "kept as written; kvfit does not read it")
            continue
        if isinstance(a.value, Expr):
            note(f"{shown}={a.value.src} is not a literal; kvfit reads only literal values, so it is ignored")
            continue
        base = a.key.split(".", 1)[0]
        if a.key in MODELLED:
            values[a.key] = a.value
        elif base in NOT_MODELLED:
            note(f"{shown}: changes vLLM's memory in ways kvfit does not model yet; kept as written")
        elif not is_known(a.key):
            note(f"{shown}: not a vLLM flag kvfit knows; kept and passed through untouched")
    settings: dict[str, Any] = {}
    for key, attr in _SETTINGS_KEYS.items():
        if key in values and values[key] is not None:
            settings[attr] = _typed(key, values[key])
    device = values.get("device")
    if device is not None:
        device = _typed("device", device)
        if device in ("cuda", "auto", "gpu"):
            settings["device"] = "cuda"
        elif device == "cpu":
            settings["device"] = "cpu"
        else:
            note(f"--device {device}: kvfit models NVIDIA GPUs and vLLM's CPU backend; checked as a CUDA GPU")
    model = values.get("model")
    if model is not None and not isinstance(model, str):
        raise BadInput(f"launch: the model must be a string (got {model!r})")
    quant = values.get("quantization")
    quant = _typed("quantization", quant) if quant is not None else None
    offload = _typed("cpu-offload-gb", values["cpu-offload-gb"]) if values.get("cpu-offload-gb") is not None else 0.0
    revision = _typed("revision", values["revision"]) if values.get("revision") is not None else None
    config = _typed("config", values["config"]) if values.get("config") is not None else None
    entrypoint = "llm" if launch.form == "python" and launch.program[:1] == ("LLM",) else "serve"
    return EngineArgs(model, settings, quant, offload, revision, entrypoint, config, tuple(notes))


def with_config(launch: Launch, config: Launch) -> Launch:
    """A serve / docker launch with its --config file's arguments, as vLLM merges them: the file's arguments
    first, the command line's after (the command line wins)."""
    cli = tuple(a for a in launch.args if a.key != "config")
    model_first = tuple(a for a in cli if a.spelling == POSITIONAL)
    rest = tuple(a for a in cli if a.spelling != POSITIONAL)
    cfg = tuple(a for a in config.args if not (a.key == "model" and model_first))
    return replace(launch, args=model_first + cfg + rest)

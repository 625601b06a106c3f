"""kvfit as a library: `kvfit.check(...)`, `kvfit.check_launch(...)`, `kvfit.explain(...)` (README "## Python
API").

The same answer as the command line, by the same code: a call becomes the Request `kvfit check` builds
(app/inputs.py, through the one flag table), is answered by app/check.answer, and its `to_dict()` is
render/json.answer_dict: what `kvfit check ... --json` prints for the same launch. The typed objects below are
read from that document, so an attribute never says something the JSON does not. `explain` is app/explain's
answer, and its `to_dict()` is what `kvfit explain --json` prints.

Keyword arguments are vLLM's own argument names (the flag table's `dest`: max_model_len=,
gpu_memory_utilization=, tensor_parallel_size=, kv_cache_dtype=, enable_lora=, speculative_config=, ...) and
the goals (context=, concurrency=, max_vram=, headroom=). Values are what vLLM's Python API takes (ints,
floats, bools, dicts for JSON flags) or the strings the command line takes ("32k", "24GiB"); a size given as an
int is bytes. Errors raise the KvfitError family (kvfit.errors): an unknown keyword is BadFlag naming it.
"""

from __future__ import annotations

import difflib
import json
import os
import shlex
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from .errors import BadFlag, BadInput
from .flags import BY_DEST

# sizes kvfit reads with a unit ("24GiB"); from Python, an int is a number of bytes
_SIZES = ("gpu_memory", "max_vram", "headroom")
_EXPLICIT = ("gpu", "gpu_memory", "vllm_version")
KEYWORDS: tuple[str, ...] = tuple(d for d in BY_DEST if d not in _EXPLICIT)
"""Every keyword check() and check_launch() take besides gpu, gpu_memory and vllm_version: kvfit's flag table."""


# --- the arguments -------------------------------------------------------------------------------------

def _abbreviates(short: str, name: str) -> bool:
    """gpu_util -> gpu_memory_utilization: each word of `short` starts a later word of `name`, in order."""
    words = iter(name.split("_"))
    return bool(short) and all(any(w.startswith(p) for w in words) for p in short.split("_") if p)


def _unknown(name: str) -> BadFlag:
    norm = name.replace("-", "_").lstrip("_")
    if norm in BY_DEST:
        return BadFlag(f"unknown keyword argument {name!r}", f"Did you mean {norm}=? (vLLM's names, with underscores)",
                       flag=name)
    names = [*KEYWORDS, *_EXPLICIT]
    close = [d for d in names if _abbreviates(norm, d)] or difflib.get_close_matches(norm, names, n=1, cutoff=0.6)
    hint = f"Did you mean {close[0]}=?" if close else \
        "kvfit takes vLLM's argument names and the goals: " + ", ".join(sorted(KEYWORDS))
    return BadFlag(f"unknown keyword argument {name!r}", hint, flag=name)


def _values(gpu, gpu_memory, vllm_version, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments -> the flag table's typed values, parsed by the table's parsers (as argv is)."""
    from .app.inputs import parse_values

    raw: dict[str, Any] = {"gpu": gpu, "gpu_memory": gpu_memory, "vllm_version": vllm_version}
    for k, v in kwargs.items():
        if k not in BY_DEST or k in _EXPLICIT:
            raise _unknown(k)
        raw[k] = v
    for k in _SIZES:
        v = raw.get(k)
        if isinstance(v, int) and not isinstance(v, bool):
            raw[k] = f"{v}B"
    return parse_values(raw)


# --- the result ----------------------------------------------------------------------------------------

def _frozen(x: Any) -> Any:
    if isinstance(x, dict):
        return MappingProxyType({k: _frozen(v) for k, v in x.items()})
    if isinstance(x, list):
        return tuple(_frozen(v) for v in x)
    return x


def _pick(cls, d: Mapping[str, Any] | None):
    if d is None:
        return None
    return cls(**{f: _frozen(d.get(f)) for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Verdict:
    """Does the launch fit (and meet the goals, when asked)? `fits` is the exit code's answer: 0 when True."""

    fits: bool
    reasons: tuple[str, ...]                   # why not, one line each (empty when it fits)
    launch_fits: bool | None = None            # the KV cache holds one request of max_model_len
    startup_ok: bool | None = None             # vLLM's startup checks pass
    nothing_fits: bool | None = None           # no launch kvfit searched fits this GPU
    table: bool = False                        # no GPU named or probed: `fits` means "fits one of them"
    fits_on: tuple[str, ...] = ()              # with table: the GPUs it fits


@dataclass(frozen=True)
class Capacity:
    """vLLM's KV cache for the launch as given: what it logs at startup."""

    num_blocks: int | None
    blocks_per_request: int | None
    kv_cache_tokens: int | None                # "GPU KV cache size: N tokens"
    max_concurrency: float | None              # "Maximum concurrency for L tokens per request: Nx"
    max_model_len_fit: int | None              # the longest max_model_len this KV cache serves
    needed_bytes: int | None                   # one request of max_model_len


@dataclass(frozen=True)
class Memory:
    """Bytes per GPU, as vLLM's memory profile splits them."""

    total_bytes: int | None
    requested_bytes: int | None                # total x gpu_memory_utilization
    weights_bytes: int | None
    weights_estimated: bool | None
    activation_bytes: int | None
    cudagraph_bytes: int | None
    non_torch_bytes: int | None
    kv_available_bytes: int | None
    kv_cache_bytes: int | None
    free_at_start_bytes: int | None
    lora_bytes: int | None
    cpu_offload_bytes: int | None


@dataclass(frozen=True)
class Recommendation:
    """A launch kvfit proposes (the recommended one, or an alternative), with the numbers it gets."""

    label: str
    as_given: bool                             # the launch as given already does
    meets: bool
    changes: Mapping[str, Any]                 # vLLM launch key -> new value (None: removed)
    needs: str | None                          # what it needs the launch lacks ("2 GPUs", a checkpoint)
    other_model: str | None
    gpus: int | None
    max_model_len: int | None
    gpu_memory_utilization: float | None
    kv_cache_memory_bytes: int | None
    tensor_parallel_size: int | None
    pipeline_parallel_size: int | None
    kv_cache_dtype: str | None
    quantization: str | None
    max_num_seqs: int | None
    enforce_eager: bool | None
    kv_cache_tokens: int | None
    max_concurrency: float | None
    unmet: tuple[str, ...]
    command: str | None = None                 # the launch in the form it was given (serve, docker, yaml, ...)
    argv: tuple[str, ...] | None = None        # ("vllm", "serve", MODEL, flags...)
    serve_command: str | None = None           # the same as one `vllm serve ...` shell line

    @classmethod
    def _of(cls, d: Mapping[str, Any] | None) -> Recommendation | None:
        if d is None:
            return None
        cmd = d.get("command") or {}
        argv = tuple(cmd["argv"]) if cmd.get("argv") else None
        base = {f: _frozen(d.get(f)) for f in cls.__dataclass_fields__ if f not in ("command", "argv", "serve_command")}
        return cls(**base, command=cmd.get("text"), argv=argv,
                   serve_command=shlex.join(argv) if argv else None)


@dataclass(frozen=True)
class CheckResult:
    """kvfit's answer for one launch. On one GPU: verdict, capacity, memory, recommendation. With no GPU
    named or probed (`verdict.table`): one CheckResult per common GPU in `results`, and the top-level
    capacity / memory / recommendation are None."""

    verdict: Verdict
    capacity: Capacity | None
    memory: Memory | None
    recommendation: Recommendation | None
    alternatives: tuple[Recommendation, ...]
    model: Mapping[str, Any]                   # id, source, family, layers, ... (JSON "model")
    gpu: Mapping[str, Any] | None              # name, total_bytes, ... (JSON "gpu")
    settings: Mapping[str, Any] | None         # the launch as vLLM resolves it (JSON "settings")
    what_if: Mapping[str, Any] | None          # vLLM's own numbers around it, no headroom: longest_max_model_len,
    #                                            min_gpu_memory_utilization (JSON "what_if")
    notes: tuple[str, ...]
    warnings: tuple[str, ...]
    results: tuple[CheckResult, ...] = ()
    _doc: str = field(default="{}", repr=False, compare=False)

    @property
    def fits(self) -> bool:
        return self.verdict.fits

    @property
    def exit_code(self) -> int:
        """What `kvfit check` exits with: 0 fits (meets the goals), 1 does not."""
        return 0 if self.verdict.fits else 1

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (schema kvfit.check/2): what `kvfit check ... --json` prints for this launch."""
        return json.loads(self._doc)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CheckResult:
        """Read a kvfit.check/2 document (this result's to_dict(), or `kvfit check --json` output)."""
        doc = json.dumps(d)
        v = d["verdict"]
        if v.get("table"):
            results = tuple(cls.from_dict({**r, "schema": d.get("schema")}) for r in d["results"])
            verdict = Verdict(fits=v["fits"], reasons=(v["reason"],) if not v["fits"] else (), table=True,
                              fits_on=tuple(v.get("fits_on") or ()))
            return cls(verdict, None, None, None, (), _frozen(results[0].model if results else {}), None, None, None,
                       tuple(d.get("notes") or ()), tuple(d.get("warnings") or ()), results, doc)
        verdict = Verdict(fits=v["fits"], reasons=tuple(v.get("reasons") or ()), launch_fits=v.get("launch_fits"),
                          startup_ok=v.get("startup_ok"), nothing_fits=v.get("nothing_fits"))
        return cls(verdict, _pick(Capacity, d.get("capacity")), _pick(Memory, d.get("memory")),
                   Recommendation._of(d.get("recommendation")),
                   tuple(r for r in (Recommendation._of(a) for a in d.get("alternatives") or ()) if r is not None),
                   _frozen(d.get("model") or {}), _frozen(d.get("gpu")), _frozen(d.get("settings")),
                   _frozen(d.get("what_if")), tuple(d.get("notes") or ()), tuple(d.get("warnings") or ()), (), doc)


@dataclass(frozen=True)
class Fix:
    description: str
    flags: Mapping[str, str]
    exact: bool
    env: Mapping[str, str]


@dataclass(frozen=True)
class Diagnosis:
    kind: str                                  # "ok" for a healthy start; else the failure's kind
    title: str
    explanation: str
    fixes: tuple[Fix, ...]


@dataclass(frozen=True)
class Explanation:
    """kvfit's reading of a vLLM log: `kvfit explain`'s answer."""

    diagnosed: bool                            # kvfit recognised an error or the KV-cache lines
    failed: bool                               # the log shows a failure
    diagnoses: tuple[Diagnosis, ...]
    corrected_command: str | None              # the launch with the first fix applied
    corrected_commands: tuple[str, ...]
    facts: Mapping[str, Any]                   # the numbers the log shows (model, max_model_len, blocks, ...)
    recheck: Mapping[str, Any] | None          # the advice re-checked with the model's KV layout
    warnings: tuple[str, ...]
    _doc: str = field(default="{}", repr=False, compare=False)

    @property
    def exit_code(self) -> int:
        """What `kvfit explain` exits with: 0 a diagnosis was made, 1 nothing kvfit recognises."""
        return 0 if self.diagnosed else 1

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (schema kvfit.explain/1): what `kvfit explain --json` prints for this log."""
        return json.loads(self._doc)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Explanation:
        diags = tuple(Diagnosis(x["kind"], x["title"], x["explanation"],
                                tuple(Fix(f["description"], _frozen(f.get("flags") or {}), bool(f.get("exact")),
                                          _frozen(f.get("env") or {})) for f in x.get("fixes") or ()))
                      for x in d["diagnoses"])
        return cls(d["diagnosed"], d["failed"], diags, d.get("corrected_command"),
                   tuple(d.get("corrected_commands") or ()), _frozen(d.get("facts") or {}), _frozen(d.get("recheck")),
                   tuple(d.get("warnings") or ()), json.dumps(d))


# --- the calls -----------------------------------------------------------------------------------------

def _answer(req) -> CheckResult:
    from .app.check import answer
    from .render.json import answer_dict

    a = answer(req)
    doc = json.loads(json.dumps(answer_dict(a, a.inputs.launch.form)))    # exactly what --json prints
    return CheckResult.from_dict(doc)


def check(model: str | os.PathLike, *, gpu: str | None = None, gpu_memory: str | int | None = None,
          vllm_version: str | None = None, **vllm_args: Any) -> CheckResult:
    """Will MODEL fit vLLM's KV cache on this GPU with these arguments? `kvfit check MODEL ...` as a call.

    model: a Hugging Face id, a local model directory or a config.json. gpu: a GPU from `kvfit gpus`;
    gpu_memory: its total as CUDA reports it ("79.25GiB", or bytes); neither: the GPU NVML finds here, else an
    answer per common GPU (`verdict.table`). vllm_version: the release to model (default: the installed vLLM,
    else the newest kvfit knows). vllm_args: vLLM's argument names and the goals (context, concurrency,
    max_vram, headroom).
    """
    from .app.inputs import Request

    if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
        raise BadInput(f"model must be a model id, directory or config.json path, got {model!r}")
    return _answer(Request(model=os.fspath(model), values=_values(gpu, gpu_memory, vllm_version, vllm_args)))


def check_launch(launch: str, *, model: str | os.PathLike | None = None, gpu: str | None = None,
                 gpu_memory: str | int | None = None, vllm_version: str | None = None, filename: str | None = None,
                 **vllm_args: Any) -> CheckResult:
    """A pasted launch: `vllm serve ...`, `docker run ... vllm/vllm-openai ...`, `python -m vllm...`, a vLLM
    YAML config, `LLM(...)` Python, a .env, a Kubernetes manifest or Helm values (anything `kvfit check
    --launch FILE` reads; `filename` helps tell the form). Keyword arguments override the launch's, as
    kvfit check's flags do; the recommendation is written back in the launch's own form."""
    from . import launch as L
    from .app.inputs import Request

    if not isinstance(launch, str) or not launch.strip():
        raise BadInput("check_launch needs the launch as text (a `vllm serve ...` line, docker, YAML, ...)")
    values = _values(gpu, gpu_memory, vllm_version, vllm_args)
    parsed = L.parse(launch, filename=filename) if filename else L.parse(launch)
    return _answer(Request(model=os.fspath(model) if model is not None else None, launch=parsed, values=values))


def explain(log: str, *, gpu: str | None = None, gpu_memory: str | int | None = None, offline: bool = False,
            label: str = "standard input") -> Explanation:
    """Explain a vLLM startup log or memory error: `kvfit explain` on this text (to_dict() is what
    `kvfit explain - --json` prints when the text is piped in). gpu / gpu_memory: the GPU it ran on when the
    log does not show its total; offline: never use the network to re-check the model; label: what the
    document's "input" calls the text."""
    from .app.explain import explain_text

    if not isinstance(log, str):
        raise BadInput(f"explain() takes the log as text, got {type(log).__name__}")
    if not log.strip():
        raise BadInput("the log is empty", "Pass the vLLM output, including the error or the KV-cache lines.")
    total = f"{gpu_memory}B" if isinstance(gpu_memory, int) and not isinstance(gpu_memory, bool) else gpu_memory
    e = explain_text(log, label, offline=offline, gpu=gpu, gpu_memory=total if isinstance(total, str) else None)
    return Explanation.from_dict(e.as_dict())


__all__ = ["check", "check_launch", "explain", "CheckResult", "Verdict", "Capacity", "Memory", "Recommendation",
           "Explanation", "Diagnosis", "Fix", "KEYWORDS"]

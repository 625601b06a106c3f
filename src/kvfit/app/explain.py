"""`kvfit explain [LOGFILE|-]`: a vLLM log or traceback in, the diagnosis and corrected flags out.

kvfit.engine.logs parses the text, kvfit.engine.explain diagnoses it from the log's own numbers. When the log
names the model (a path or Hugging Face id kvfit can resolve: local, HF cache, bundled catalog, the Hub unless
--offline), this module re-checks the advice with the model's real KV layout (app/inputs.load_model +
plan.evaluate; logs/recheck.py), using the settings and the KV memory the log shows:

* the KV memory of the run is rebuilt from the log's block count (exact: vLLM's checks depend on the
  block count only), or its token count, or its GiB figures (to 0.01 GiB);
* it is checked against the model: the log's GiB figures must match blocks x bytes per block, and vLLM's
  "needed" figure must match one request's bytes; if they do not, the log is from another checkpoint or other
  settings and the advice stays the log-only one (said so);
* then the longest max_model_len that fits that memory is vLLM's own arithmetic (exact), the CPU budget that
  serves the asked length is exact in bytes, and the utilisation that serves it is computed from the exact
  bytes, rounded up for the log's 0.01-GiB GPU total.

Exit codes: 0 a diagnosis was made (an error explained, or a healthy start summarised; --json says whether
the log shows a failure); 1 the text holds no vLLM error or KV-cache line kvfit recognises; 2 the input cannot
be read (missing file, a directory, empty or binary data).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import launch as L
from ..errors import BadInput
from ..logs.diagnose import Explanation, Fix, explain
from ..logs.parse import LogFacts, parse_log
from ..logs.recheck import Recheck, candidate_fixes, recheck, settings_from_log
from ..settings import Settings
from .inputs import load_model

if TYPE_CHECKING:
    from rich.console import Console

GIB = 1 << 30
MAX_BYTES = 64 << 20          # larger inputs keep their first 16 MiB and last 48 MiB


# --- input ------------------------------------------------------------------------------------------

def read_text(source: str | None, stdin=None) -> tuple[str, str]:
    """(text, label). Raises BadInput (exit 2) for anything that is not readable text."""
    stdin = stdin if stdin is not None else sys.stdin
    if source is None or source == "-":
        if source is None and getattr(stdin, "isatty", lambda: False)():
            raise BadInput("no log given", "Pass a file (kvfit explain vllm.log) or pipe one (... | kvfit explain -).")
        buf = getattr(stdin, "buffer", None)
        try:
            data = buf.read() if buf is not None else stdin.read()
        except (OSError, ValueError) as e:
            raise BadInput(f"cannot read standard input: {e}") from e
        label = "standard input"
    else:
        p = Path(source).expanduser()
        if p.is_dir():
            raise BadInput(f"{source} is a directory, not a log file")
        try:
            with p.open("rb") as fh:
                data = fh.read(MAX_BYTES + 1)
                if len(data) > MAX_BYTES:
                    fh.seek(-(48 << 20), 2)
                    data = data[: 16 << 20] + b"\n" + fh.read()
        except OSError as e:
            raise BadInput(f"cannot read {source}: {e.strerror or e}") from e
        label = source
    if isinstance(data, str):
        text = data
    else:
        if len(data) > MAX_BYTES:
            data = data[: 16 << 20] + b"\n" + data[-(48 << 20):]
        if data[:8192].count(b"\0") > 16:
            raise BadInput(f"{label} is binary data, not a vLLM log")
        text = data.decode("utf-8", errors="replace")
    if not text.strip():
        raise BadInput(f"{label} is empty", "Paste the vLLM output, including the error or the KV-cache lines.")
    return text, label


# --- the corrected launch ------------------------------------------------------------------------------

def corrected_launch(facts: LogFacts, settings: Settings, fix: Fix | None) -> L.Launch | None:
    """`vllm serve MODEL ...` with the log's settings (through kvfit's flag table) and the fix applied; None
    when there is no fix."""
    if fix is None or (not fix.flags and not fix.env):
        return None
    # the flags a launch sets that decide the KV cache; the log's resolved block size and batch sizes are vLLM's
    # defaults as often as the user's, so they are not written
    keep = Settings(max_model_len=settings.max_model_len, gpu_memory_utilization=settings.gpu_memory_utilization,
                    kv_cache_memory_bytes=settings.kv_cache_memory_bytes,
                    tensor_parallel_size=settings.tensor_parallel_size,
                    pipeline_parallel_size=settings.pipeline_parallel_size, kv_cache_dtype=settings.kv_cache_dtype,
                    data_parallel_size=settings.data_parallel_size,
                    decode_context_parallel_size=settings.decode_context_parallel_size,
                    enforce_eager=settings.enforce_eager, device=settings.device)
    base = L.compose(facts.model or "MODEL", keep)
    if settings.device == "cuda" and facts.gpu_memory_utilization is not None and settings.kv_cache_memory_bytes is None:
        base = L.updated(base, {"gpu-memory-utilization": f"{facts.gpu_memory_utilization:g}"})
    changes: dict = {}
    for k, v in fix.flags.items():
        key = k.lstrip("-")
        if key == "kv-cache-memory-bytes":
            changes["gpu-memory-utilization"] = None
        if key == "gpu-memory-utilization":
            changes["kv-cache-memory-bytes"] = None
        changes[key] = True if v == "" else v
    fixed = L.updated(base, changes)
    if fix.env:
        from dataclasses import replace

        fixed = replace(fixed, prefix=tuple(f"{k}={v}" for k, v in fix.env.items()) + fixed.prefix)
    return fixed


@dataclass(frozen=True)
class Explained:
    """One log's answer: what it shows, the diagnosis, the re-check, the corrected launches. The report,
    --json and kvfit.explain() all render this."""

    label: str
    facts: LogFacts
    explanation: Explanation
    recheck: Recheck | None
    commands: tuple[L.Launch, ...]

    @property
    def exit_code(self) -> int:
        return 0 if self.explanation.diagnoses else 1

    def as_dict(self) -> dict:
        """The --json document (schema kvfit.explain/1), JSON types only."""
        from ..render import explain as rx

        texts = [L.render(c).rstrip("\n") for c in self.commands]
        d = rx.explanation_dict(self.facts, self.explanation, self.recheck, texts[0] if texts else None, self.label)
        d["corrected_commands"] = texts
        return json.loads(json.dumps(d, default=str))


def explain_text(text: str, label: str, *, offline: bool, gpu: str | None = None,
                 gpu_memory: str | None = None) -> Explained:
    facts = parse_log(text)
    if (gpu or gpu_memory) and facts.total_gpu_memory_gib is None:
        from ..flags import BY_DEST
        from .inputs import pick_gpus

        vals = {"gpu": BY_DEST["gpu"].parse(gpu) if gpu else None,
                "gpu_memory": BY_DEST["gpu_memory"].parse(gpu_memory) if gpu_memory else None}
        named = pick_gpus(vals, Settings(), None)[0][0]
        facts.total_gpu_memory_gib = round(named.total_bytes / GIB, 2)
        facts.derived.append("total_gpu_memory_gib (--gpu/--gpu-memory)")
    expl = explain(facts)
    rc = recheck(facts, expl, offline=offline, load=lambda ref, rev, off: load_model(ref, rev, off)[0]) \
        if expl.diagnoses else None
    settings = settings_from_log(facts)
    fixes = candidate_fixes(expl, rc)
    commands: list[L.Launch] = []
    for f in fixes:
        c = corrected_launch(facts, settings, f)
        if c is not None and c not in commands:
            commands.append(c)
        if len(commands) == 2:
            break
    return Explained(label, facts, expl, rc, tuple(commands))


def run(*, source: str | None, as_json: bool, offline: bool, out: Console, err: Console, stdin=None,
        gpu: str | None = None, gpu_memory: str | None = None) -> int:
    text, label = read_text(source, stdin)
    e = explain_text(text, label, offline=offline, gpu=gpu, gpu_memory=gpu_memory)
    if as_json:
        out.print_json(json.dumps(e.as_dict()))
    else:
        from ..render import explain as rx

        rx.render(out, e.facts, e.explanation, e.recheck, list(e.commands), label)
    return e.exit_code

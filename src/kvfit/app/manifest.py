"""The CI gate: `kvfit check --manifest kvfit.toml` checks every model x GPU x requirement it lists.

Format (README "## CI gate"):

    [defaults]                    # optional; every [[check]] inherits these fields
    vllm_version = "0.32.0"

    [[check]]
    name = "orpheus-tts"          # required, unique
    model = "canopylabs/orpheus-3b-0.1-ft"     # or launch = "vllm serve ..." or launch_file = "deploy/serve.sh"
    gpus = ["RTX 4090", "L4"]     # or gpu = "A10", or gpu_memory = "23.58GiB"
    context = 8192                # goals: context, concurrency, max_vram, headroom
    concurrency = 4
    max_vram = "9GB"
    gpu_memory_utilization = 0.35 # vLLM settings, named as kvfit check's flags (with underscores)
    quantization = "fp8"

An entry passes when its launch, as written, starts and meets its goals on every GPU it names (without goals:
when it fits). Exit 0 when all pass, 1 when any fails, 2 when the manifest is wrong (the message names the
entry and the field).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from ..plan import goals as G
from .. import launch as L
from ..errors import BadInput, ConfigError, GpuError, HubError, KvfitError, ModelNotFound
from ..sources.model import read_text_file

# field -> (accepted types, what it is)
SETTINGS_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "max_model_len": ((int, str), "max-model-len"), "gpu_memory_utilization": ((float, int), "gpu-memory-utilization"),
    "tensor_parallel_size": ((int,), "tensor-parallel-size"), "pipeline_parallel_size": ((int,), "pipeline-parallel-size"),
    "dtype": ((str,), "dtype"), "kv_cache_dtype": ((str,), "kv-cache-dtype"), "block_size": ((int,), "block-size"),
    "max_num_seqs": ((int,), "max-num-seqs"), "max_num_batched_tokens": ((int, str), "max-num-batched-tokens"),
    "enforce_eager": ((bool,), "enforce-eager"), "kv_cache_memory_bytes": ((int, str), "kv-cache-memory-bytes"),
    "quantization": ((str,), "quantization"), "cpu_offload_gb": ((float, int), "cpu-offload-gb"),
}
OTHER_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,), "model": (str,), "launch": (str,), "launch_file": (str,), "gpu": (str,), "gpus": (list,),
    "gpu_memory": (str,), "gpu_count": (int,), "context": (int, str), "concurrency": (int,), "max_vram": (str, int),
    "headroom": (str, int), "vllm_version": (str,), "entrypoint": (str,), "device": (str,), "revision": (str,),
    "offline": (bool,), "description": (str,),
}
FIELDS = {**{k: v[0] for k, v in SETTINGS_FIELDS.items()}, **OTHER_FIELDS}
TOP_LEVEL = {"defaults", "check"}


class ManifestError(BadInput):
    """A manifest that cannot be right: names the file, the entry and the field. Exit 2."""


def _toml():
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:          # Python 3.10: the tomli backport (a conditional dependency)
        import tomli as tomllib  # type: ignore[import-not-found,no-redef]
    return tomllib


def _entry_lines(text: str) -> list[int]:
    """The line of each [[check]] header, in order (tomllib keeps no positions)."""
    return [i + 1 for i, ln in enumerate(text.splitlines()) if re.match(r"^\s*\[\[\s*check\s*\]\]", ln)]


def _type_name(types: tuple[type, ...]) -> str:
    names = {int: "a whole number", float: "a number", str: "a string", bool: "true or false", list: "a list"}
    return " or ".join(dict.fromkeys(names[t] for t in types))


def _check_type(where: str, field: str, value: Any) -> None:
    types = FIELDS[field]
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        raise ManifestError(f"{where}: field {field!r} must be {_type_name(types)}, got {value!r}")
    if field == "gpus":
        if not value or not all(isinstance(x, str) and x.strip() for x in value):
            raise ManifestError(f"{where}: field 'gpus' must be a non-empty list of GPU names")


def load(path: str) -> tuple[list[dict], str, Path]:
    """Validated entries (defaults merged, each with 'line'), the manifest text and its directory."""
    p = Path(path).expanduser()
    text = read_text_file(p, f"--manifest {path}", ManifestError)
    tomllib = _toml()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(f"{path}: not valid TOML ({e})") from None
    unknown = set(data) - TOP_LEVEL
    if unknown:
        raise ManifestError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}",
                            "A manifest has an optional [defaults] table and [[check]] entries.")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ManifestError(f"{path}: [defaults] must be a table")
    for k, v in defaults.items():
        if k not in FIELDS or k == "name":
            raise ManifestError(f"{path}: [defaults]: unknown field {k!r}", "Fields: " + ", ".join(sorted(FIELDS)))
        _check_type(f"{path}: [defaults]", k, v)
    checks = data.get("check")
    if not isinstance(checks, list) or not checks:
        raise ManifestError(f"{path}: no [[check]] entries", "Add at least one [[check]] table; see README '## CI gate'.")
    lines = _entry_lines(text)
    names: set[str] = set()
    entries = []
    for i, raw in enumerate(checks):
        where0 = f"{path}: check[{i + 1}]"
        if not isinstance(raw, dict):
            raise ManifestError(f"{where0} must be a table")
        name = raw.get("name")
        where = f"{where0} {name!r}" if isinstance(name, str) else where0
        for k, v in raw.items():
            if k not in FIELDS:
                raise ManifestError(f"{where}: unknown field {k!r}", "Fields: " + ", ".join(sorted(FIELDS)))
            _check_type(where, k, v)
        if not isinstance(name, str) or not name.strip():
            raise ManifestError(f"{where0}: field 'name' is required")
        if name in names:
            raise ManifestError(f"{where}: field 'name' repeats an earlier entry's name")
        names.add(name)
        e = {**defaults, **raw, "line": lines[i] if i < len(lines) else None}
        given = [k for k in ("model", "launch", "launch_file") if k in e]
        if not given:
            raise ManifestError(f"{where}: needs one of the fields 'model', 'launch' or 'launch_file'")
        if "launch" in e and "launch_file" in e:
            raise ManifestError(f"{where}: field 'launch' and field 'launch_file' both given; keep one")
        gpu_fields = [k for k in ("gpu", "gpus", "gpu_memory") if k in e]
        if not gpu_fields and e.get("device") != "cpu":
            raise ManifestError(f"{where}: field 'gpu' is required (or 'gpus', 'gpu_memory')",
                                "CI runners usually have no GPU to probe; name the GPUs the deployment uses.")
        if "gpu" in e and "gpus" in e:
            raise ManifestError(f"{where}: field 'gpu' and field 'gpus' both given; keep one")
        if "concurrency" in e and e["concurrency"] < 1:
            raise ManifestError(f"{where}: field 'concurrency' must be >= 1")
        e["where"] = where
        entries.append(e)
    return entries, text, p.parent


def _field_of(e: dict, err: KvfitError) -> str:
    msg = err.message
    if isinstance(err, GpuError):
        return "gpus" if "gpus" in e else "gpu"
    if isinstance(err, (ModelNotFound, ConfigError, HubError)):
        return "launch_file" if "launch_file" in e else "launch" if "launch" in e else "model"
    if msg.startswith("launch:") or "launch" in msg.split(":")[0]:
        return "launch_file" if "launch_file" in e else "launch"
    for fld, (_, flag) in SETTINGS_FIELDS.items():
        if f"--{flag}" in msg:
            return fld if fld in e else ("launch_file" if "launch_file" in e else "launch" if "launch" in e else fld)
    for fld in ("context", "concurrency", "max_vram", "headroom", "gpu_memory", "vllm_version", "entrypoint",
                "device"):
        if f"--{fld.replace('_', '-')}" in msg:
            return fld
    return "model" if "model" in e else "launch"


def _request(e: dict, gpu: str | None, base: Path, offline: bool):
    from .plan import Request

    launch = None
    launch_dir = None
    if "launch" in e:
        launch = L.parse(e["launch"])
    elif "launch_file" in e:
        f = (base / e["launch_file"]).resolve()
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as ex:
            raise BadInput(f"launch: cannot read {e['launch_file']} ({getattr(ex, 'strerror', None) or ex})") from None
        launch = L.parse(text, filename=f.name)
        launch_dir = f.parent
    overrides: dict[str, Any] = {}
    from ..units import parse_size

    for fld, (_, key) in SETTINGS_FIELDS.items():
        if fld in e:
            v = e[fld]
            if fld == "kv_cache_memory_bytes" and isinstance(v, str):
                v = parse_size(v, "--kv-cache-memory-bytes")
            elif fld == "enforce_eager" and v is False:
                v = None
            overrides[key] = v
    return Request(model=e.get("model"), launch=launch,
                   launch_dir=launch_dir or base, overrides={k: v for k, v in overrides.items() if v is not None},
                   gpu=gpu, gpu_memory=e.get("gpu_memory"),
                   gpu_count=e.get("gpu_count"), vllm_version=e.get("vllm_version"),
                   entrypoint=e.get("entrypoint"), device=e.get("device"), revision=e.get("revision"),
                   offline=offline or bool(e.get("offline")), context=e.get("context"),
                   concurrency=e.get("concurrency"), max_vram=str(e["max_vram"]) if "max_vram" in e else None,
                   headroom=str(e["headroom"]) if "headroom" in e else None)


def run_entries(path: str, *, offline: bool = False) -> dict:
    """Check every entry on every GPU it names. Raises ManifestError (exit 2) for a wrong manifest."""
    from .plan import corrected, plan_all, prepare

    entries, _, base = load(path)
    results = []
    for e in entries:
        gpus = e.get("gpus") or [e.get("gpu")]
        strict = any(k in e for k in ("context", "concurrency", "max_vram", "headroom"))
        for gpu in gpus:
            t0 = time.perf_counter()
            try:
                req = _request(e, gpu, base, offline)
                p = prepare(req, strict=strict)
                if len(p.gpus) != 1:
                    raise GpuError("no GPU named")
                pl = plan_all(p)[0]
            except ManifestError:
                raise
            except KvfitError as ex:
                fld = _field_of(e, ex)
                raise ManifestError(f"{e['where']}: field {fld!r}: {ex.message}", ex.hint) from None
            a = pl.as_given
            fix = None
            if not pl.meets and pl.recommended is not None:
                fix = L.render(corrected(p, pl.recommended.check), p.launch.form).rstrip("\n")
            ok = pl.meets
            message = "meets its goals" if ok and strict else "fits" if ok else (a.unmet[0] if a.unmet else "fails")
            if not ok and pl.recommended is not None:
                message += f" (kvfit recommends: {pl.recommended.label})"
            results.append({
                "name": e["name"], "model": p.model.id, "gpu": a.gpu.name, "line": e.get("line"), "ok": ok,
                "fits": a.result.fits, "meets": a.meets, "unmet": list(a.unmet), "message": message,
                "max_model_len": a.max_model_len,
                "gpu_memory_utilization": a.utilization if a.settings.kv_cache_memory_bytes is None else None,
                "kv_cache_memory_bytes": a.settings.kv_cache_memory_bytes,
                "kv_cache_tokens": a.result.capacity.kv_cache_tokens, "sequences_resident": a.resident,
                "footprint_bytes": a.footprint_bytes,
                "goals": {"context": p.goals.context, "concurrency": p.goals.concurrency,
                          "max_vram_bytes": p.goals.max_vram_bytes,
                          "headroom_bytes": a.headroom_bytes} if strict else None,
                "fix": fix, "fix_label": pl.recommended.label if (not ok and pl.recommended) else None,
                "notes": list(p.notes), "time": round(time.perf_counter() - t0, 4),
            })
    passed = sum(r["ok"] for r in results)
    return {"schema": "kvfit.manifest/1", "manifest": path, "ok": passed == len(results), "passed": passed,
            "failed": len(results) - passed, "results": results}


def _gh_escape(s: str) -> str:
    """A workflow command's message (GitHub's escapeData)."""
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(s: str) -> str:
    """A workflow command's property value (GitHub's escapeProperty)."""
    return _gh_escape(s).replace(":", "%3A").replace(",", "%2C")


def github_annotations(data: dict) -> list[str]:
    """GitHub Actions workflow commands: one ::error per failing entry, at its line in the manifest."""
    out = []
    for r in data["results"]:
        if r["ok"]:
            continue
        loc = f"file={_gh_property(str(data['manifest']))}" + (f",line={r['line']}" if r.get("line") else "")
        title = _gh_property(f"kvfit {r['name']} on {r['gpu']}")
        body = r["message"] + ("\n" + r["fix"] if r.get("fix") else "")
        out.append(f"::error {loc},title={title}::{_gh_escape(body)}")
    return out


def step_summary(data: dict) -> str:
    rows = ["| entry | GPU | result | max_model_len | utilization | sequences | note |", "|---|---|---|---|---|---|---|"]
    for r in data["results"]:
        rows.append(f"| {r['name']} | {r['gpu']} | {'✅ pass' if r['ok'] else '❌ fail'} | {r['max_model_len']:,} | "
                    f"{r['gpu_memory_utilization'] if r['gpu_memory_utilization'] is not None else '-'} | "
                    f"{r['sequences_resident'] if r['sequences_resident'] is not None else '-'} | "
                    f"{r['message'].replace('|', '/')} |")
    return f"### kvfit: {data['passed']} passed, {data['failed']} failed\n\n" + "\n".join(rows) + "\n"


def run_manifest(path: str, *, as_json: bool, junit: str | None, svg: str | None, offline: bool, out, err) -> int:
    data = run_entries(path, offline=offline)
    if junit:
        from ..render.junit import junit_xml

        try:
            Path(junit).expanduser().write_text(junit_xml(data), encoding="utf-8")
        except OSError as e:
            raise BadInput(f"--junit {junit}: cannot write it ({e.strerror or e})") from None
    if svg:
        from ..render import svg as svgmod

        svgmod.write(svg, svgmod.manifest_svg(data))
    if os.environ.get("GITHUB_ACTIONS") == "true":
        stream = sys.stderr if as_json else sys.stdout
        for line in github_annotations(data):
            print(line, file=stream)
        summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary_file:
            try:
                with open(summary_file, "a", encoding="utf-8") as f:
                    f.write(step_summary(data))
            except OSError:
                pass
    if as_json:
        out.file.write(json.dumps(data, indent=2) + "\n")
    else:
        _render(data, out)
    return 0 if data["ok"] else 1


def _render(data: dict, console) -> None:
    from rich.table import Table

    t = Table(title=f"kvfit CI gate: {data['manifest']}", title_justify="left")
    for col, kw in (("entry", {"overflow": "fold"}), ("GPU", {"overflow": "fold"}), ("result", {}),
                    ("max len", {"justify": "right"}), ("util", {}), ("seqs", {"justify": "right"}),
                    ("vLLM takes", {"justify": "right"})):
        t.add_column(col, **kw)
    for r in data["results"]:
        t.add_row(r["name"], G.short_name(r["gpu"]), "[green]pass[/]" if r["ok"] else "[bold red]FAIL[/]",
                  f"{r['max_model_len']:,}",
                  f"{r['gpu_memory_utilization']:g}" if r["gpu_memory_utilization"] is not None else "-",
                  "-" if r["sequences_resident"] is None else str(r["sequences_resident"]),
                  f"{r['footprint_bytes'] / 2**30:.2f} GiB")
    console.print(t)
    for r in data["results"]:
        if not r["ok"]:
            console.print(f"[bold red]FAIL[/] [bold]{r['name']}[/] on {r['gpu']}: {r['message']}", highlight=False)
            if r.get("fix"):
                console.print("  kvfit recommends:")
                console.print(r["fix"], markup=False, highlight=False)
    word = "[green]all passed[/]" if data["ok"] else f"[bold red]{data['failed']} failed[/]"
    console.print(f"{data['passed']} passed, {data['failed']} failed: {word}")

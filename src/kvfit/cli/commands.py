"""One function per command: turn the parsed arguments into a Request (app/inputs.py), call the use case,
print its answer in the form asked. Nothing here computes a number."""

from __future__ import annotations

import json
import sys
from argparse import Namespace
from pathlib import Path

from .. import launch as L
from ..errors import BadInput, KvfitError, LaunchError
from ..launch.grammar import FORMS
from ..flags import BY_DEST


def flag_values(ns: Namespace) -> dict:
    """The table's flags given on the command line, raw (parsed by the request builder)."""
    return {k: v for k, v in vars(ns).items() if k in BY_DEST and v is not None}


def request_from(ns: Namespace, words: list[str], *, stdin=None):
    """The Request of `kvfit check` / `sweep`: the model, a launch (after `--`, --launch, --config) and the
    table's flags."""
    from ..app.inputs import Request, parse_values, read_launch_file

    launch, launch_dir = None, None
    sources = [x for x in (words and "--", getattr(ns, "launch_file", None), getattr(ns, "config_file", None)) if x]
    if len(sources) > 1:
        raise LaunchError("give one launch: after `--`, --launch FILE, or --config FILE")
    if words:
        launch = L.parse_argv(words)
    elif getattr(ns, "launch_file", None):
        launch, launch_dir = read_launch_file(ns.launch_file, stdin)
    elif getattr(ns, "config_file", None):
        launch, launch_dir = read_launch_file(ns.config_file, stdin)
        if launch.form != "yaml":
            raise LaunchError(f"--config {ns.config_file}: expected a vLLM YAML config file")
    return Request(model=ns.model, launch=launch, launch_dir=launch_dir, values=parse_values(flag_values(ns)))


def check(ns: Namespace, words: list[str], out, err) -> int:
    if ns.manifest:
        if ns.model or words or ns.launch_file or ns.config_file:
            raise BadInput("--manifest checks the models it lists; give no MODEL or launch with it")
        from ..app import manifest

        return manifest.run(ns.manifest, as_json=ns.as_json or ns.fmt == "json", junit=ns.junit, svg=ns.svg,
                            offline=bool(ns.offline), out=out, err=err)
    if ns.junit:
        raise BadInput("--junit goes with --manifest", "Write the checks to a kvfit.toml; see README '## CI gate'.")
    if ns.as_json and ns.fmt not in (None, "json"):
        raise BadInput(f"--json and --format {ns.fmt} ask for two outputs; keep one")
    req = request_from(ns, words)
    if getattr(ns, "cluster", False):
        from ..app import cluster

        return cluster.run(req, as_json=ns.as_json or ns.fmt == "json", out=out, err=err)
    if ns.smoke:
        from ..app import smoke

        return smoke.run(req, out=out, err=err, as_json=ns.as_json, dummy_weights=ns.dummy_weights,
                         record=ns.record, timeout=ns.timeout, tolerance=ns.tolerance, as_given=ns.as_given,
                         show_log=ns.show_log, show_check=True)
    from ..app.check import answer

    a = answer(req)
    form = ns.fmt if ns.fmt in FORMS else a.inputs.launch.form
    if ns.svg:
        from ..render import svg

        svg.write(ns.svg, svg.check_svg(a, form))
    if ns.fmt in FORMS:
        return _print_form(a, ns.fmt, err)
    if ns.as_json or ns.fmt == "json":
        from ..render.json import answer_dict

        out.print_json(json.dumps(answer_dict(a, form)), highlight=False)
        return a.exit_code
    from ..render import report

    if a.table:
        report.render_table(out, a)
    else:
        report.render(out, a, details=ns.details)
    return a.exit_code


def _print_form(a, fmt: str, err) -> int:
    """--format FORM: only the recommended launch on stdout (`> launch.sh`, `$(...)`); the verdict on stderr."""
    if a.table:
        raise BadInput(f"--format {fmt} prints the launch for one GPU, and none was named or probed "
                       f"({a.inputs.probe_note})", "Name the GPU: --gpu \"RTX 4090\" or --gpu-memory 24GiB.")
    g = a.per_gpu[0]
    rec = g.recommended
    verdict = "fits as given" if g.ok else ("no launch on this GPU fits" if g.plan.nothing_fits else "does not fit")
    if rec is None or rec.launch is None:
        what = rec.needs if rec is not None else "nothing kvfit checked meets the goals"
        err.print(f"kvfit: {verdict}; no launch to print ({what})", markup=False, highlight=False)
        return 1
    text = L.render(rec.launch, fmt, width=1 << 30)      # shell forms on one line: `$(kvfit ... --format serve)`
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()
    label = "the launch as given" if rec.option.label == "as given" else f"recommended: {rec.option.label}"
    needs = f" (needs {rec.needs})" if rec.needs else ""
    err.print(f"kvfit: {verdict}; {label}{needs} on {g.gpu.name}", markup=False, highlight=False)
    return a.exit_code


def smoke(ns: Namespace, words: list[str], out, err) -> int:
    from ..app import smoke as app_smoke
    from ..app.inputs import Request, parse_values

    req = Request(model=ns.model, values=parse_values(flag_values(ns)))
    return app_smoke.run(req, out=out, err=err, as_json=ns.as_json, dummy_weights=ns.dummy_weights,
                         record=ns.record, timeout=ns.timeout, tolerance=ns.tolerance, as_given=ns.as_given,
                         show_log=ns.show_log)


def sweep(ns: Namespace, words: list[str], out, err) -> int:
    from ..app import sweep as app_sweep

    req = request_from(ns, words)
    return app_sweep.run(req, utilizations=ns.utilizations, as_json=ns.as_json, svg=ns.svg, out=out, err=err)


def explain(ns: Namespace, words: list[str], out, err) -> int:
    from ..app import explain as app_explain

    return app_explain.run(source=ns.logfile, as_json=ns.as_json, offline=ns.offline, out=out, err=err,
                           gpu=ns.gpu, gpu_memory=ns.gpu_memory)


def models(ns: Namespace, words: list[str], out, err) -> int:
    from ..arch.normalize import normalize
    from ..sources.catalog import entries

    rows = []
    for e in entries():
        try:
            a = normalize(e["config"], hf_quant_config=e.get("hf_quant_config"))
            fam, layers, length = a.label, a.num_hidden_layers, a.derived_max_len
            # logical parameters (packed MXFP4 / 4-bit storage counts bytes, not parameters)
            params = a.params.total if a.params else sum((e.get("params") or {}).values())
        except KvfitError:
            fam, layers, length = "not modelled yet", None, None
            params = sum((e.get("params") or {}).values())
        rows.append({"id": e["id"], "family": fam, "layers": layers, "max_model_len": length, "params": params})
    rows.sort(key=lambda r: r["id"].lower())
    if ns.as_json:
        out.print_json(json.dumps(rows), highlight=False)
        return 0
    from rich.table import Table

    t = Table(title=f"{len(rows)} bundled models", box=None, pad_edge=False)
    for c, kw in (("id", {"no_wrap": True}), ("architecture", {"overflow": "fold"}), ("layers", {"justify": "right"}),
                  ("max_model_len", {"justify": "right"}), ("params", {"justify": "right", "no_wrap": True})):
        t.add_column(c, **kw)
    for r in rows:
        t.add_row(r["id"], r["family"], str(r["layers"] or "-"),
                  f"{r['max_model_len']:,}" if r["max_model_len"] else "-",
                  f"{r['params'] / 1e9:.2f} B" if r["params"] else "-")
    out.print(t)
    return 0


def gpus(ns: Namespace, words: list[str], out, err) -> int:
    from rich.markup import escape
    from rich.table import Table

    from ..gpu.catalog import catalog
    from ..gpu.nvml import probe

    found = probe()
    cat = catalog()
    if ns.as_json:
        out.print_json(json.dumps({
            "probed": [{"index": g.index, "name": g.name, "total_bytes": g.total_bytes, "free_bytes": g.free_bytes,
                        "used_bytes": g.used_bytes, "processes": [list(p) for p in g.processes], "mig": g.mig}
                       for g in found.gpus],
            "probe_note": found.reason, "catalog": list(cat)}), highlight=False)
        return 0
    if found.gpus:
        t = Table(title="GPUs on this machine (NVML)")
        for c in ("index", "name", "total", "free", "used", "processes"):
            t.add_column(c)
        for g in found.gpus:
            t.add_row(str(g.index), escape(g.name), f"{g.total_bytes / 2**30:.2f} GiB",
                      f"{(g.free_bytes or 0) / 2**30:.2f} GiB", f"{(g.used_bytes or 0) / 2**30:.2f} GiB",
                      ", ".join(f"pid {p} {b / 2**30:.2f} GiB" for p, b in g.processes) or "-")
        out.print(t)
    else:
        out.print(f"[dim]no GPU probed: {escape(found.reason or '')}[/]")
    t = Table(title="GPU catalog (totals as CUDA reports them)")
    for c in ("name", "aliases", "total", "compute capability"):
        t.add_column(c)
    for e in cat:
        t.add_row(e["name"], ", ".join(e.get("aliases", [])), f"{e['total_bytes'] / 2**30:.2f} GiB",
                  str(e.get("compute_capability", "")))
    out.print(t)
    return 0


def schema(ns: Namespace, words: list[str], out, err) -> int:
    """`kvfit schema [COMMAND]`: the JSON Schema of a command's --json output (src/kvfit/schemas)."""
    from .. import schemas

    if ns.schema_name is None:
        doc = {n: schemas.load(n, bundled=True) for n in schemas.NAMES}
    elif ns.schema_name in schemas.NAMES:
        doc = schemas.load(ns.schema_name, bundled=True)
    else:
        import difflib

        close = difflib.get_close_matches(ns.schema_name, schemas.NAMES, n=1)
        raise BadInput(f"no schema for {ns.schema_name!r}",
                       (f"Did you mean {close[0]!r}? " if close else "") + "Schemas: " + ", ".join(schemas.NAMES))
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return 0


__all__ = ["check", "smoke", "sweep", "explain", "models", "gpus", "schema", "request_from", "Path"]

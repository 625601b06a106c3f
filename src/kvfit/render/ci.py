"""The CI gate's outputs: GitHub Actions annotations (::error at the entry's line), the step summary table,
and the terminal table."""

from __future__ import annotations

from ..plan.alternatives import short_name


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


def render(data: dict, console) -> None:
    from rich.table import Table

    t = Table(title=f"kvfit CI gate: {data['manifest']}", title_justify="left", box=None, pad_edge=False)
    for col, kw in (("entry", {"no_wrap": True}), ("GPU", {"no_wrap": True}), ("result", {}),
                    ("max len", {"justify": "right"}), ("util", {}), ("seqs", {"justify": "right"}),
                    ("vLLM takes", {"justify": "right"})):
        t.add_column(col, **kw)
    for r in data["results"]:
        t.add_row(r["name"], short_name(r["gpu"]), "[green]pass[/]" if r["ok"] else "[bold red]FAIL[/]",
                  f"{r['max_model_len']:,}",
                  f"{r['gpu_memory_utilization']:g}" if r["gpu_memory_utilization"] is not None else "-",
                  "-" if r["sequences_resident"] is None else str(r["sequences_resident"]),
                  f"{r['footprint_bytes'] / 2**30:.2f} GiB")
    console.print(t)
    for r in data["results"]:
        if not r["ok"]:
            console.print(f"[bold red]FAIL[/] [bold]{r['name']}[/] on {r['gpu']}: {r['message']}", highlight=False)
            if r.get("fix"):
                console.print("  kvfit recommends:" + (f" (needs {r['fix_needs']})" if r.get("fix_needs") else ""))
                console.print(r["fix"], markup=False, highlight=False, soft_wrap=True)
    word = "[green]all passed[/]" if data["ok"] else f"[bold red]{data['failed']} failed[/]"
    console.print(f"{data['passed']} passed, {data['failed']} failed: {word}")

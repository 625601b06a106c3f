"""The planner's answer for people: the goals, the verdict on the launch as given, the corrected launch in
the form it was pasted (or --format), the pinned-KV variant and the ranked alternatives."""

from __future__ import annotations

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..plan import goals as G
from .. import launch as L
from .report import render, render_table

GiB = 1 << 30


def _g(n: int) -> str:
    return f"{n / GiB:,.2f} GiB"


def _seqs(c: G.Check) -> str:
    if c.resident is None:
        return "no KV limit"
    return f"{c.resident} x {c.max_model_len:,} tokens"


def summary(c: G.Check) -> str:
    """One line: what a checked launch gives."""
    s = c.settings
    how = (f"KV budget {_g(s.kv_cache_memory_bytes)}" if s.kv_cache_memory_bytes is not None
           else f"gpu_memory_utilization {c.utilization:g}")
    return (f"max_model_len {c.max_model_len:,}, {how}: {_seqs(c)} resident, "
            f"vLLM takes {_g(c.footprint_bytes)} per GPU")


def goals_text(p, pl: G.Planning) -> Text:
    g = p.goals
    t = Text()
    if g.strict:
        t.append("goals  ", style="bold")
        t.append(g.describe() + "\n")
    else:
        t.append("goals  ", style="bold")
        t.append(f"none asked: the launch as given must fit; changes kvfit proposes keep {g.headroom.text} headroom\n")
    a = pl.as_given
    t.append("as given  ", style="bold")
    if a.meets:
        t.append("✔ meets" if g.strict else "✔ fits", style="bold green")
    else:
        t.append("✘ does not meet" if g.strict else "✘ does not fit", style="bold red")
    t.append(f"  {summary(a)}")
    for u in a.unmet:
        t.append(f"\n  • {u}")
    rec = pl.recommended
    t.append("\nrecommended  ", style="bold")
    if rec is None:
        t.append("nothing on this GPU meets the goals", style="red")
    elif rec.tier == -1 and rec.label == "as given":
        t.append("the launch as given")
        if pl.min_utilization is not None and pl.min_utilization < a.utilization and a.settings.kv_cache_memory_bytes is None:
            t.append(f" (gpu_memory_utilization {pl.min_utilization:g} is the least that meets the goals)")
    else:
        t.append(rec.label)
        if rec.requires:
            t.append(f"  [needs {rec.requires}]", style="yellow")
        ch = G.describe_changes(G.changes(p.settings, p.variant, rec.check.settings, rec.check.variant))
        if ch != rec.label:
            t.append(f"\n  flags: {ch}")
        t.append(f"\n  {summary(rec.check)}")
    if pl.kv_form is not None and pl.kv_form.settings.kv_cache_memory_bytes is not None \
            and (rec is None or rec.check.settings.kv_cache_memory_bytes is None):
        k = pl.kv_form.settings.kv_cache_memory_bytes
        t.append("\nor pin the KV cache  ", style="bold")
        t.append(f"--kv-cache-memory-bytes {k} ({_g(k)}): vLLM skips KV profiling, so the size cannot drift; "
                 f"{_seqs(pl.kv_form)}")
    if pl.ceiling < 1.0:
        t.append(f"\nutilization ceiling  {pl.ceiling:.2f}", style="dim")
    return t


def alternatives_table(pl: G.Planning) -> Table | None:
    if not pl.alternatives:
        return None
    t = Table(title="alternatives, cheapest first (util: the least that meets the goals; context: the longest "
                    "at your utilization; seqs: resident at the target length)", title_justify="left")
    for col, kw in (("#", {}), ("change", {"overflow": "fold"}), ("meets", {}), ("util", {}), ("context", {}),
                    ("seqs", {}), ("needs / costs", {"overflow": "fold"})):
        t.add_column(col, **kw)
    for i, o in enumerate(pl.alternatives[:12], 1):
        seq = "-" if o.resident is None else f"{o.resident}"
        t.add_row(str(i), o.label, "[green]yes[/]" if o.meets else "[red]no[/]",
                  f"{o.util:g}" if o.util is not None and o.meets else "-",
                  f"{o.max_len:,}" if o.max_len else "-", seq,
                  (f"{o.requires}; " if o.requires else "") + o.cost)
    return t


def render_planning(console: Console, p, plans: list[G.Planning], results, form: str) -> None:
    from ..app.plan import corrected

    if len(plans) == 1:
        pl, res = plans[0], results[0]
        render(res, console)
        console.print(Panel(goals_text(p, pl), title="plan", expand=False))
        table = alternatives_table(pl)
        if table is not None:
            console.print(table)
        if pl.recommended is not None and pl.kv_form is not None and pl.kv_form is not pl.recommended.check \
                and pl.recommended.check.settings.kv_cache_memory_bytes is None:
            console.print(Panel(L.render(corrected(p, pl.kv_form), form).rstrip("\n"),
                                title=f"with the KV cache pinned ({form})", expand=False))
        for n in (*p.notes, *pl.notes, *(pl.recommended.check.notes if pl.recommended else ())):
            console.print(f"[dim]note: {n}[/]")
        return
    console.print(f"[dim]No GPU probed ({p.probe_note}); showing common GPUs. Name one with --gpu or --gpu-memory.[/]")
    render_table(results, console, f"{p.model.id} at max_model_len {results[0].resolved.max_model_len:,} "
                                   f"({p.model.source}), vLLM {p.profile.version}")
    t = Table(title=f"goals: {p.goals.describe()}" if p.goals.strict else "plan", title_justify="left")
    for col in ("GPU", "as given", "recommended", "gives"):
        t.add_column(col)
    for pl in plans:
        rec = pl.recommended
        t.add_row(pl.as_given.gpu.name, "[green]meets[/]" if pl.meets else "[red]no[/]",
                  "-" if rec is None else ("as given" if rec.label == "as given" else rec.label),
                  "-" if rec is None else summary(rec.check))
    console.print(t)
    for n in p.notes:
        console.print(f"[dim]note: {n}[/]")

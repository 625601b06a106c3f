"""The report people read: the verdict and its one reason first, then the fix and the command to paste,
then where the memory goes. `--details` adds the numbers behind it, vLLM's what-ifs, the policy, the
alternatives and the notes.

A command meant to be copied is printed as plain text, outside any box, never wrapped by rich: one flag per
line continued with ` \\` when it does not fit the terminal, so a selection pastes as one working command.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .. import launch as L
from ..plan.alternatives import short_name
from ..memory.parallel import of as parallel_of
from ..plan.evaluate import Result
from ..plan.ranks import deployment
from ..units import GiB


def _g(n: int) -> str:
    return f"{n / GiB:,.2f} GiB"


def gpu_label(res: Result) -> str:
    n = parallel_of(res.settings).gpus          # every GPU of the launch (TP x PP x PCP x DP)
    return (f"{n} x " if n > 1 else "") + res.gpu.name


def memory_bar(res: Result, width: int = 60) -> Text:
    """Where one GPU's memory goes: weights, activation, CUDA graphs, other, KV, left free (GiB)."""
    m = res.memory
    parts = [("weights", m.weights_bytes, "blue"), ("activation", m.activation_bytes, "magenta"),
             ("CUDA graphs", m.cudagraph_bytes, "yellow"), ("other", m.non_torch_bytes, "white"),
             ("KV cache", m.kv_cache_bytes, "green"), ("free", m.left_free_bytes, "grey50")]
    total = max(m.total_bytes, sum(max(0, p[1]) for p in parts), 1)
    bar = Text()
    done, acc = 0, 0
    for _, n, style in parts:        # cumulative rounding: the cells always add up to `width`
        acc += max(0, n)
        cells = round(width * acc / total) - done
        done += cells
        bar.append("█" * cells, style=style)
    bar.append("\n")
    for label, n, style in parts:
        if n <= 0 and label in ("CUDA graphs", "activation"):
            continue
        bar.append("■ ", style=style)
        bar.append(f"{label} {max(0, n) / GiB:.2f}  ")
    bar.append("GiB per GPU")
    return bar


def print_command(console: Console, launch: L.Launch, form: str | None = None) -> None:
    """A launch to paste: plain lines, wrapped only at flag boundaries with ` \\`, never by rich."""
    width = max(40, min(console.width, 120))
    text = L.render(launch, form, width=width - 2).rstrip("\n")
    console.print(text, markup=False, highlight=False, soft_wrap=True, emoji=False)


def _seqs(c) -> str:
    if c.resident is None:
        return "no KV limit"
    return f"{c.resident} x {c.max_model_len:,}-token sequences resident"


def outcome(c) -> str:
    """One line: what a checked launch gives."""
    cap = c.result.capacity
    s = c.settings
    how = (f"KV budget {_g(s.kv_cache_memory_bytes)}" if s.kv_cache_memory_bytes is not None
           else f"gpu_memory_utilization {c.utilization:g}")
    conc = f"{cap.max_concurrency:.2f}x concurrency" if cap.max_concurrency != float("inf") else "no KV limit"
    return f"max_model_len {c.max_model_len:,}, {how}: {cap.kv_cache_tokens:,} KV tokens, {conc}"


def headline(g, goals_asked: bool) -> Text:
    pl, res = g.plan, g.plan.as_given.result
    where = f"{res.model.id} on {gpu_label(res)}"
    if pl.ok:
        t = Text("✔ MEETS THE GOALS" if goals_asked else "✔ FITS", style="bold green")
        cap = res.capacity
        t.append(f"  {where}: max_model_len {res.resolved.max_model_len:,}, {cap.kv_cache_tokens:,} KV tokens, "
                 f"{cap.max_concurrency:.2f}x concurrency")
        return t
    if pl.nothing_fits:
        word = "NOTHING ON THIS GPU MEETS THE GOALS" if goals_asked else "NO LAUNCH FITS THIS GPU"
        if parallel_of(res.settings).gpus > 1:
            word = word.replace("THIS GPU", "THESE GPUS")
        t = Text(f"✘ {word}", style="bold red")
    else:
        t = Text("✘ DOES NOT MEET THE GOALS" if goals_asked else "✘ DOES NOT FIT", style="bold red")
    t.append(f"  {where} at max_model_len {res.resolved.max_model_len:,}")
    failed = pl.failed
    if failed:
        check, why = failed
        label = {"fits": "", "headroom": "", "context": "context: ", "concurrency": "concurrency: ",
                 "max_vram": "max-vram: "}.get(check, "")
        t.append(f"\n  {label}{why}")
    return t


def render(console: Console, a, *, details: bool = False) -> None:
    """One GPU's answer (a: app.check.Answer with one GPU)."""
    inp, g = a.inputs, a.per_gpu[0]
    pl = g.plan
    res = pl.as_given.result
    goals_asked = pl.goals.active
    for w in inp.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}")
    console.print(headline(g, goals_asked))
    m = res.memory
    src = f"{res.model.source}: {res.model.detail}"
    if m.weights_estimated:
        console.print(f"[yellow]  estimate:[/] [dim]weights estimated from config.json ({escape(src)}); the verdict is "
                      "as good as that estimate[/]")
    else:
        console.print(f"[dim]  model from {escape(src)}; vLLM {res.profile.version}[/]")
    if goals_asked:
        console.print(f"[dim]  goals: {escape(pl.goals.describe())}; headroom {pl.policy.headroom_text}[/]")
    console.print()
    rec = g.recommended
    if rec is None:
        console.print("[red]No launch kvfit checked meets the goals.[/]" if goals_asked else
                      "[red]No launch kvfit checked fits.[/]"
                      + (" See the alternatives (--details)." if not details and g.alternatives else ""))
    elif rec.option.label == "as given":
        console.print("[bold]Launch[/] (as given):")
        print_command(console, rec.launch)
    else:
        o = rec.option
        needs = f" [yellow](needs {escape(rec.needs)})[/]" if rec.needs else ""
        console.print(f"[bold]Fix:[/] {escape(o.label)}{needs}")
        console.print(f"  [dim]{escape(outcome(o.check))}; keeps {pl.policy.headroom_text} headroom[/]")
        if rec.launch is not None:
            print_command(console, rec.launch)
    console.print()
    console.print(memory_bar(res))
    if parallel_of(res.settings).gpus > 1:
        console.print(f"layout: {escape(deployment(res).line)}", highlight=False)
    for n in inp.notes:
        console.print(f"[dim]note: {escape(n)}[/]")
    arch = res.model.arch
    for n in arch.inferred:            # a repository with custom code: say that none of it ran
        if "auto_map" in n:
            console.print(f"[dim]note: inferred: {escape(n)}[/]")
    if details:
        render_details(console, a)
    else:
        more = [f"{len(g.alternatives)} alternatives"] if g.alternatives else []
        console.print(f"[dim]--details: the numbers behind this, vLLM's what-ifs"
                      + (", " + ", ".join(more) if more else "") + "[/]")


def render_details(console: Console, a) -> None:
    inp, g = a.inputs, a.per_gpu[0]
    pl = g.plan
    res = pl.as_given.result
    r, m, cap, lay, arch = res.resolved, res.memory, res.capacity, res.layout, res.model.arch
    console.print()
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    t.add_row("model", f"{escape(res.model.id)}  [dim]({res.model.source}: {escape(res.model.detail)})[/]")
    layers = f"{arch.num_hidden_layers} layers" + (f" ({len(arch.layers)} with KV)"
                                                     if len(arch.layers) != arch.num_hidden_layers else "")
    t.add_row("architecture", f"{escape(arch.model_type)}, {escape(arch.label)}, {layers}, {r.model_dtype} weights"
              + (f" ({escape(arch.quantization)})" if arch.quantization else "") + f", KV {r.kv_cache_dtype}")
    t.add_row("GPU", f"{escape(gpu_label(res))}, {_g(res.gpu.total_bytes)} each"
              + (f", {_g(res.gpu.free_bytes)} free" if res.gpu.free_bytes is not None else "")
              + f"  [dim]({escape(res.gpu.source)})[/]")
    t.add_row("vLLM", f"{res.profile.version} ({res.profile.name} profile)")
    t.add_row("settings", f"max_model_len {r.max_model_len:,}, gpu_memory_utilization {r.gpu_memory_utilization:g}, "
              f"max_num_batched_tokens {r.max_num_batched_tokens:,}, max_num_seqs {r.max_num_seqs}"
              + (", eager" if res.settings.enforce_eager else ""))
    t.add_row("KV per token", f"{lay.kv_bytes_per_token:,} B per GPU, block {lay.block_size}, "
              f"{lay.bytes_per_block:,} B per block"
              + (f", {len(lay.groups)} groups" if not lay.uniform else ""))
    wsrc = res.inventory.source if res.inventory is not None else ""
    if m.explicit_kv_budget:
        mem = f"KV budget {_g(m.kv_available_bytes)} (--kv-cache-memory-bytes); weights {_g(m.weights_bytes)}"
    else:
        mem = (f"requested {_g(m.requested_bytes)} = weights {_g(m.weights_bytes)} + activation "
               f"{_g(m.activation_bytes)} + CUDA graphs {_g(m.cudagraph_bytes)} + other {_g(m.non_torch_bytes)} + "
               f"KV {_g(max(0, m.kv_available_bytes))}")
    t.add_row("memory", mem)
    if m.weights_estimated or wsrc:
        t.add_row("weights", f"[dim]{'estimated: ' if m.weights_estimated else ''}{escape(wsrc)}[/]")
    t.add_row("capacity", f"{cap.num_blocks:,} blocks, {cap.kv_cache_tokens:,} tokens, max concurrency "
              f"{cap.max_concurrency:.2f}x at {r.max_model_len:,} tokens")
    w = pl.what_if
    wi = []
    if w.longest_max_model_len:
        wi.append(f"longest max_model_len at {r.gpu_memory_utilization:g}: {w.longest_max_model_len:,}")
    if w.min_gpu_memory_utilization is not None:
        wi.append(f"least gpu_memory_utilization for {r.max_model_len:,}: {w.min_gpu_memory_utilization:g}")
    if wi:
        t.add_row("vLLM what-ifs", "; ".join(wi) + " [dim](no headroom)[/]")
    t.add_row("policy", f"headroom {pl.policy.headroom_text}; utilization ceiling {pl.policy.ceiling:.2f} "
              f"[dim]({escape(pl.policy.ceiling_reason)})[/]")
    console.print(t)
    if parallel_of(res.settings).gpus > 1:
        console.print(layout_table(deployment(res)))
    if g.kv_pinned is not None and g.kv_pinned.launch is not None:
        k = g.kv_pinned.option.check.settings.kv_cache_memory_bytes
        console.print(f"\n[bold]Or pin the KV cache[/] (--kv-cache-memory-bytes {k}, {_g(k)}: vLLM skips KV "
                      "profiling, so the size cannot drift):")
        print_command(console, g.kv_pinned.launch)
    if g.alternatives:
        console.print()
        console.print(alternatives_table(g))
    notes = [*res.notes, *pl.notes, *(f"inferred: {x}" for x in arch.inferred if "auto_map" not in x)]
    for n in notes:
        console.print(f"[dim]note: {escape(n)}[/]")


def layout_table(d) -> Table:
    """--details: per node, the ranks it runs and what the heaviest of them holds."""
    t = Table(title=f"layout: {d.nodes} node{'s' if d.nodes > 1 else ''} ({escape(d.nodes_from)}); memory above is "
                    f"rank {d.bottleneck}'s", title_justify="left")
    for col, kw in (("node", {}), ("GPUs", {"justify": "right"}), ("ranks", {}), ("engines (DP)", {}),
                    ("weights / GPU", {"justify": "right"}), ("KV / GPU", {"justify": "right"}),
                    ("blocks", {"justify": "right"}), ("fits", {})):
        t.add_column(col, **kw)
    for n in d.per_node:
        on = [r for r in d.ranks if r.node == n.node]
        heavy = max(on, key=lambda r: r.weights_bytes)
        mark = " *" if d.this_node == n.node else ""
        t.add_row(f"{n.node}{mark}", str(n.gpus), f"{n.ranks[0]}-{n.ranks[1]}",
                  ", ".join(map(str, n.engines)), _g(heavy.weights_bytes), _g(min(r.kv_bytes for r in on)),
                  f"{min(r.blocks for r in on):,}", "[green]yes[/]" if n.fits else "[red]no[/]")
    return t


def alternatives_table(g) -> Table:
    t = Table(title="alternatives, cheapest first (util: least that meets the goals; context: longest at your "
                    "utilization)", title_justify="left")
    for col, kw in (("#", {}), ("change", {"overflow": "fold"}), ("meets", {}), ("util", {}), ("context", {}),
                    ("needs / costs", {"overflow": "fold"})):
        t.add_column(col, **kw)
    for i, p in enumerate(g.alternatives[:12], 1):
        o = p.option
        t.add_row(str(i), escape(o.label), "[green]yes[/]" if o.meets else "[red]no[/]",
                  f"{o.least_util:g}" if o.least_util is not None and o.meets else "-",
                  f"{o.context:,}" if o.context else "-",
                  escape((f"{p.needs}; " if p.needs else "") + o.cost))
    return t


def render_table(console: Console, a) -> None:
    """No GPU named or probed: the launch on common GPUs (vLLM's numbers), and how to get a verdict."""
    inp = a.inputs
    first = a.per_gpu[0].plan.as_given.result
    console.print(f"[bold]{escape(first.model.id)}[/] at max_model_len {first.resolved.max_model_len:,} on common "
                  f"GPUs (vLLM {first.profile.version}; no GPU named or probed: {escape(inp.probe_note or '')})")
    t = Table(box=None, pad_edge=False, show_edge=False)
    for col, kw in (("GPU", {"no_wrap": True}), ("GiB", {"justify": "right"}), ("fits", {}),
                    ("KV tokens", {"justify": "right"}), ("conc.", {"justify": "right"}),
                    ("longest", {"justify": "right"}), ("min util", {"justify": "right"})):
        t.add_column(col, **kw)
    for g in a.per_gpu:
        res = g.plan.as_given.result
        w = g.plan.what_if
        mu = w.min_gpu_memory_utilization
        ceiling = g.plan.policy.ceiling
        t.add_row(escape(short_name(res.gpu.name)), f"{res.gpu.total_bytes / GiB:.1f}",
                  "[green]yes[/]" if g.ok else "[red]no[/]", f"{res.capacity.kv_cache_tokens:,}",
                  f"{res.capacity.max_concurrency:.2f}x",
                  f"{w.longest_max_model_len:,}" if w.longest_max_model_len else "-",
                  "-" if mu is None else (f"{mu:g}" if mu <= ceiling else f"[red]{mu:g}[/]"))
    console.print(t)
    n = sum(g.ok for g in a.per_gpu)
    console.print(f"[dim]longest: max_model_len that fits at the launch's utilization; min util: the least that "
                  f"serves {first.resolved.max_model_len:,} (red: over kvfit's {a.per_gpu[0].plan.policy.ceiling:.2f} "
                  "ceiling). vLLM's numbers, no headroom.[/]")
    console.print(f"Fits {n} of {len(a.per_gpu)} (exit {0 if n else 1}). For a verdict and a launch to paste, name "
                  "the GPU: --gpu \"RTX 4090\" or --gpu-memory 24GiB.")
    for note in inp.notes:
        console.print(f"[dim]note: {escape(note)}[/]")

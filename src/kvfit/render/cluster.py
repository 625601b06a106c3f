"""The cluster plan (app/cluster.py): the smallest layouts that meet the goals and each node's launch."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from .. import launch as L
from ..units import GiB
from .report import print_command


def render(console, inp, pol, found) -> None:
    goals = inp.goals.describe() if inp.goals.active else "fits"
    gpu = inp.gpus[0]
    per_node = inp.settings.gpus_per_node or 8
    console.print(f"[bold]{escape(inp.model.id)}[/] on up to {inp.gpu_count} x {escape(gpu.name)} ({per_node} per node): "
                  f"the smallest layouts that meet {escape(goals)}" + (f", headroom {pol.headroom_text}"
                                                                        if inp.goals.active else ""))
    if not found:
        console.print(f"[red]No layout on {inp.gpu_count} GPUs meets the goals.[/]")
        return
    t = Table(box=None, pad_edge=False)
    for col, kw in (("#", {}), ("GPUs", {"justify": "right"}), ("nodes", {"justify": "right"}), ("layout", {}),
                    ("weights / GPU", {"justify": "right"}), ("KV tokens, all engines", {"justify": "right"}),
                    ("sequences", {"justify": "right"})):
        t.add_column(col, **kw)
    for i, (lay, _) in enumerate(found, 1):
        d = lay.deployment
        t.add_row(str(i), str(d.gpus), str(d.nodes), escape(lay.label),
                  f"{lay.check.result.memory.weights_bytes / GiB:.2f} GiB", f"{d.kv_tokens_total:,}",
                  "-" if lay.check.resident is None else f"{lay.check.resident:,}")
    console.print(t)
    lay, launches = found[0]
    console.print(f"\n[bold]Launch (1: {escape(lay.label)})[/]" + (", one per node:" if len(launches) > 1 else ":"))
    for k, launch in enumerate(launches):
        if len(launches) > 1:
            console.print(f"[dim]node {k}{' (the API server)' if k == 0 else ''}; NODE0_ADDRESS: node 0's "
                          "address[/]")
        print_command(console, launch)


def cluster_dict(inp, pol, found) -> dict:
    from .json import layout_dict, result_dict

    return {
        "schema": "kvfit.cluster/1",
        "model": inp.model.id, "gpu": inp.gpus[0].name, "gpu_count": inp.gpu_count,
        "goals": {"context": inp.goals.context, "concurrency": inp.goals.concurrency} if inp.goals.active else None,
        "layouts": [{
            "label": lay.label, "gpus": lay.gpus, "nodes": lay.deployment.nodes,
            "sequences_resident": lay.check.resident, "kv_cache_tokens_total": lay.deployment.kv_tokens_total,
            "result": result_dict(lay.check.result),
            "launches": [L.render(x, "serve", width=1 << 30).rstrip("\n") for x in launches],
        } for lay, launches in found],
    }

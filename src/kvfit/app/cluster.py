"""`kvfit check MODEL --gpu GPU --gpu-count N --cluster`: the smallest layouts of MODEL on N GPUs that meet the
goals (plan/cluster.py), each re-checked from the launch text it prints, with the launch for every node."""

from __future__ import annotations

import json

from .. import launch as L
from ..errors import BadInput
from ..plan.cluster import Layout, node_settings, smallest_layouts
from ..plan.goals import judge
from ..plan.policy import policy_for
from .inputs import Request, build, parse_values


def plan_cluster(req: Request, top: int = 5):
    inp = build(req)
    if inp.probe_note is not None or len(inp.gpus) != 1:
        raise BadInput("--cluster plans on one GPU type: name it", "e.g. --gpu H100 --gpu-count 16")
    if not inp.gpu_count:
        raise BadInput("--cluster needs the GPUs there are: --gpu-count N", "e.g. --gpu H100 --gpu-count 16")
    gpu = inp.gpus[0]
    pol = policy_for(gpu, inp.goals, inp.settings.device)
    headroom = pol.headroom_bytes if inp.goals.active else 0
    per_node = inp.settings.gpus_per_node or 8
    lays = smallest_layouts(inp.model, gpu, inp.settings, inp.profile, inp.goals, headroom,
                            max_gpus=inp.gpu_count, gpus_per_node=per_node, top=top)
    out = []
    for lay in lays:
        launches = [_node_launch(inp.model_ref, s) for s in node_settings(lay)]
        recheck(inp, gpu, lay, launches[0], headroom)
        out.append((lay, launches))
    return inp, pol, out


MASTER = "NODE0_ADDRESS"


def _node_launch(ref: str, s) -> L.Launch:
    """One node's `vllm serve`: with vLLM's multi-node launcher every node names node 0 (--master-addr) and the
    others start engines only (--headless)."""
    launch = L.compose(ref, s, extra={"headless": True} if s.node_rank else None)
    return L.updated(launch, {"master-addr": MASTER}) if s.nnodes > 1 else launch


def recheck(inp, gpu, lay: Layout, launch: L.Launch, headroom: int) -> None:
    """The printed node-0 launch, read back as kvfit reads any pasted launch, gives the same settings and
    meets the goals again (the one-answer rule: what kvfit prints, kvfit accepts)."""
    values = L.read_values(L.parse(L.render(launch, "serve", width=1 << 30))).values
    from ..flags import settings_from

    again = settings_from(parse_values({k: v for k, v in values.items()}), inp.settings.__class__(
        entrypoint=inp.settings.entrypoint, device=inp.settings.device, vllm_env=inp.settings.vllm_env))
    c = judge(inp.model, gpu, again, inp.profile, inp.goals, headroom)
    if not c.meets or c.result.capacity != lay.check.result.capacity:
        raise AssertionError(f"kvfit's own launch for {lay.label} does not re-check: {c.unmet}")


def run(req: Request, *, as_json: bool, out, err) -> int:
    from ..render import cluster as R

    inp, pol, found = plan_cluster(req)
    if as_json:
        out.print_json(json.dumps(R.cluster_dict(inp, pol, found)), highlight=False)
    else:
        R.render(out, inp, pol, found)
    return 0 if found else 1

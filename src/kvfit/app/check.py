"""`kvfit check`: one Request in, one Answer out; every output form (the report, --json, --format, --svg,
the manifest, smoke) renders this Answer and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .. import launch as L
from ..gpu.model import Gpu
from ..plan.alternatives import Option
from ..plan.planner import Plan, plan
from .inputs import Inputs, Request, build, catalog_gpus


@dataclass(frozen=True)
class Proposal:
    """An option as a launch to paste: the user's launch (their form, spelling, comments) with the option's
    changes, its GPU pin widened when it needs more GPUs; None when it needs another checkpoint."""

    option: Option
    launch: L.Launch | None
    needs: str | None                 # what it needs that the launch does not have ("2 GPUs", a checkpoint)


@dataclass(frozen=True)
class GpuAnswer:
    gpu: Gpu
    plan: Plan
    recommended: Proposal | None
    kv_pinned: Proposal | None
    alternatives: tuple[Proposal, ...]

    @property
    def ok(self) -> bool:
        return self.plan.ok


@dataclass(frozen=True)
class Answer:
    inputs: Inputs
    per_gpu: tuple[GpuAnswer, ...]

    @property
    def table(self) -> bool:
        """No GPU named or probed: an answer per common GPU, no single verdict."""
        return self.inputs.probe_note is not None

    @property
    def ok(self) -> bool:
        """Exit code 0. One GPU: its verdict. The common table: it fits at least one of them (said so)."""
        return any(a.ok for a in self.per_gpu) if self.table else self.per_gpu[0].ok

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


def propose(inp: Inputs, o: Option) -> Proposal:
    if o.other_model:
        return Proposal(o, None, o.requires)
    launch = L.apply(inp.launch, inp.settings, o.check.settings)
    needs = o.requires
    pinned, how = inp.pin
    if pinned is not None and o.gpus > pinned:
        launch = L.with_gpus(launch, o.gpus)
        present = inp.gpu_count is not None and inp.gpu_count >= o.gpus
        if not present and needs is None:
            needs = f"{o.gpus} GPUs ({how} pins {pinned})"
    elif o.gpus > 1 and inp.gpu_count is not None and o.gpus > inp.gpu_count and needs is None:
        needs = f"{o.gpus} GPUs ({inp.gpu_count} present)"
    return Proposal(o, launch, needs)


def answer_for(inp: Inputs) -> Answer:
    cat = catalog_gpus()
    out = []
    for g in inp.gpus:
        p = plan(inp.model, g, inp.settings, inp.profile, inp.goals, gpu_count=inp.gpu_count, catalog=cat)
        rec = propose(inp, p.recommended) if p.recommended is not None else None
        kv = propose(inp, p.kv_pinned) if p.kv_pinned is not None else None
        alts = tuple(propose(inp, o) for o in p.alternatives)
        out.append(GpuAnswer(g, p, rec, kv, alts))
    return Answer(inp, tuple(out))


def answer(req: Request) -> Answer:
    return answer_for(build(req))


def command_text(p: Proposal | None, form: str | None = None) -> str | None:
    """The proposal's launch as text in `form` (default: the user's own)."""
    if p is None or p.launch is None:
        return None
    return L.render(p.launch, form).rstrip("\n")


def with_form(a: Answer, form: str) -> str | None:
    """The recommended launch of a single-GPU answer in `form`."""
    g = a.per_gpu[0]
    return command_text(g.recommended, form)


__all__ = ["Answer", "GpuAnswer", "Proposal", "answer", "answer_for", "command_text", "replace"]

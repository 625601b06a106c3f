"""Kubernetes manifests and vLLM production-stack Helm values as launches (forms "k8s" and "helm").

k8s   a Deployment / StatefulSet (also DaemonSet, ReplicaSet, Job, CronJob, Pod) whose container runs vLLM:
      `command` + `args` (`vllm serve ...`, `python -m vllm.entrypoints...`, the vllm/vllm-openai image's own
      entrypoint, or a `sh -c "vllm serve ..."` script), `env`, and `resources.limits["nvidia.com/gpu"]`.
      In a file of several documents, the first workload whose container runs vLLM.
      A LeaderWorkerSet is one multi-node launch: the leader's vLLM command (`leaderTemplate`, else
      `workerTemplate`), Launch.group = leaderWorkerTemplate.size pods (one node each), Launch.gpus = the
      leader pod's GPUs, LWS_GROUP_SIZE / LWS_WORKER_INDEX (0) in its env as LWS sets them;
      engine_args.read checks the group against the parallel flags.
helm  a vLLM production-stack values file: `servingEngineSpec.modelSpec[]` (modelURL, vllmConfig: maxModelLen,
      gpuMemoryUtilization, tensorParallelSize, dtype, extraArgs ..., requestGPU, env), read as the chart's
      template `helm/templates/deployment-vllm-multi.yaml` turns them into `vllm serve` arguments.

Read with PyYAML (its nodes carry the positions). Written back by editing only the text of the values that
changed (a scalar, a sequence item, a mapping line), so comments, quoting and layout survive. Pure: the caller
reads files and passes the text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from difflib import SequenceMatcher
from typing import Any

import yaml

from ..errors import BadInput
from .model import POSITIONAL, Arg, Launch

GPU_RESOURCE = "nvidia.com/gpu"
# workload kind -> the path from the document to its pod spec
POD_SPEC = {"Deployment": ("spec", "template", "spec"), "StatefulSet": ("spec", "template", "spec"),
            "DaemonSet": ("spec", "template", "spec"), "ReplicaSet": ("spec", "template", "spec"),
            "Job": ("spec", "template", "spec"), "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
            "Pod": ("spec",)}
# LeaderWorkerSet (leaderworkerset.x-k8s.io/v1): one group = `size` pods, the leader's pod spec
# (leaderTemplate, or workerTemplate when it has none) and the workers'
LWS = "LeaderWorkerSet"
# LWS injects these into every pod of a group (the leader's worker index is 0); LWS_LEADER_ADDRESS is a DNS name
LWS_SIZE, LWS_INDEX = "LWS_GROUP_SIZE", "LWS_WORKER_INDEX"
# the leader starts a Ray cluster over the group: vLLM's examples/online_serving/multi-node-serving.sh leader,
# or `ray start --head`
_RAY_HEAD = re.compile(r"multi-node-serving\.sh\s+leader\b|\bray\s+start\b[^\n;&|]*--head\b")
_SHELLS = re.compile(r"^(?:\S*/)?(?:sh|bash|dash|ash|zsh)$")
_SHELL_C = re.compile(r"^-[a-z]*c[a-z]*$")          # -c, -ec, -lc, -xec


# --- YAML nodes with their positions --------------------------------------------------------------------

def compose_all(text: str) -> list[yaml.Node]:
    try:
        return [d for d in yaml.compose_all(text, Loader=yaml.SafeLoader) if d is not None]
    except yaml.YAMLError as e:
        raise BadInput(f"YAML: {e}") from None
    except RecursionError:
        raise BadInput("YAML: nested too deeply to read") from None


def _entry(node: yaml.Node | None, key: str) -> tuple[yaml.Node | None, yaml.Node | None]:
    """The (key node, value node) of `key` in a mapping node; the last one wins, as in PyYAML's mapping."""
    found: tuple[yaml.Node | None, yaml.Node | None] = (None, None)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                found = (k, v)
    return found


def _get(node: yaml.Node | None, key: str) -> yaml.Node | None:
    return _entry(node, key)[1]


def _key(node: yaml.Node | None, key: str) -> yaml.Node | None:
    return _entry(node, key)[0]


def _path(node: yaml.Node | None, *keys: str) -> yaml.Node | None:
    for k in keys:
        node = _get(node, k)
    return node


def _data(node: yaml.Node | None) -> Any:
    """The node as PyYAML's safe_load would give it."""
    if node is None:
        return None
    try:
        return yaml.SafeLoader("").construct_document(node)
    except yaml.YAMLError as e:
        raise BadInput(f"YAML: {e}") from None


def _str(node: yaml.Node | None) -> str | None:
    v = _data(node) if isinstance(node, yaml.ScalarNode) else None
    return v if isinstance(v, str) else None


def _go(v: Any) -> str:
    """A value as Helm's `quote` prints it (Go's %v; Helm reads numbers as float64)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return str(int(v))
    if isinstance(v, float):
        return repr(v)
    if v is None:
        return ""
    return str(v)


def _last_leaf(node: yaml.Node) -> yaml.Node:
    """The last scalar under a node: where its text really ends (a block collection's end mark is the next
    token, past comments and blank lines)."""
    while isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(node, yaml.MappingNode) else last
    return node


def _is_vllm_docs(docs: list[yaml.Node]) -> str | None:
    """'k8s' or 'helm' when the parsed YAML documents are one of those; None otherwise."""
    for d in docs:
        if not isinstance(d, yaml.MappingNode):
            continue
        if isinstance(_get(d, "servingEngineSpec"), yaml.MappingNode):
            return "helm"
        if _str(_get(d, "apiVersion")) and _str(_get(d, "kind")):
            return "k8s"
    return None


_SNIFF = re.compile(r"^(?:apiVersion|kind|servingEngineSpec)\s*:", re.M)


def sniff(text: str) -> str | None:
    """'k8s' for Kubernetes manifests (apiVersion + kind), 'helm' for production-stack values
    (servingEngineSpec); None for anything else, a vLLM --config file included (no vLLM flag has those names)."""
    if not _SNIFF.search(text):
        return None
    try:
        docs = [d for d in yaml.compose_all(text, Loader=yaml.SafeLoader) if d is not None]
    except (yaml.YAMLError, RecursionError):
        return None
    return _is_vllm_docs(docs)


# --- text edits -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Edit:
    start: int
    end: int
    text: str


def apply(text: str, edits: list[Edit]) -> str:
    out, pos = [], 0
    for e in sorted(edits, key=lambda e: (e.start, e.end)):
        if e.start < pos:
            raise BadInput("launch: overlapping edits to the YAML (please report this file)")
        out.append(text[pos:e.start])
        out.append(e.text)
        pos = e.end
    out.append(text[pos:])
    return "".join(out)


def _line_start(text: str, i: int) -> int:
    return text.rfind("\n", 0, i) + 1


def _line_end(text: str, i: int) -> int:
    """The index after the newline ending the line that holds i (or the end of the text)."""
    j = text.find("\n", i)
    return len(text) if j < 0 else j + 1


_PLAIN = re.compile(r"^[A-Za-z0-9_./~+=@$%-][A-Za-z0-9_./~+=@$%:()-]*$")


def scalar(value: str, style: str | None, flow: bool = False) -> str:
    """A string as a YAML scalar in the given style ('"', "'", None for plain), falling back to double quotes
    when the style cannot hold it."""
    if style == "'" and "\n" not in value:
        return "'" + value.replace("'", "''") + "'"
    if style is None and _PLAIN.match(value) and not value.endswith(":") and ": " not in value:
        try:
            same = yaml.safe_load(value) == value
        except yaml.YAMLError:
            same = False
        if same:
            return value
    return json.dumps(value, ensure_ascii=False)


def _typed_scalar(v: Any, style: str | None) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if isinstance(v, float) else str(v)
    return scalar(str(v), style)


def _block_item_prefix(text: str, node: yaml.Node) -> str | None:
    """'    - ' when the item sits alone on its line(s) of a block sequence; None otherwise."""
    s = node.start_mark.index
    prefix = text[_line_start(text, s):s]
    if not re.fullmatch(r"[ \t]*-[ \t]+", prefix):
        return None
    end = _last_leaf(node).end_mark.index
    tail = text[end:_line_end(text, end)]
    if not re.fullmatch(r"[ \t]*(?:#[^\n]*)?\n?", tail):
        return None
    return prefix


def _seq_style(seq: yaml.SequenceNode) -> str | None:
    styles = [n.style for n in seq.value if isinstance(n, yaml.ScalarNode)]
    return styles[0] if styles else '"'


def _items_text(text: str, seq: yaml.SequenceNode, tokens: list[str], style: str | None, prefix: str) -> str:
    if seq.flow_style:
        return ", ".join(scalar(t, style, flow=True) for t in tokens)
    return "".join(prefix + scalar(t, style) + "\n" for t in tokens)


def _exotic() -> BadInput:
    return BadInput("launch: kvfit edits sequence items written one per line (`- value`) or inline "
                    "(`[a, b]`); this layout it cannot edit in place",
                    "Write the container's args one per line, or as a [\"--flag\", \"value\"] list.")


def seq_replace(text: str, seq: yaml.SequenceNode, nodes: list[yaml.Node], tokens: list[str]) -> Edit:
    """Replace consecutive items of a sequence (nodes, at least one) with tokens (maybe none)."""
    style = nodes[0].style if isinstance(nodes[0], yaml.ScalarNode) else _seq_style(seq)
    if seq.flow_style:
        first, last = nodes[0], nodes[-1]
        i, j = seq.value.index(first), seq.value.index(last)
        if tokens:
            return Edit(first.start_mark.index, _last_leaf(last).end_mark.index,
                        _items_text(text, seq, tokens, style, ""))
        if j + 1 < len(seq.value):                     # drop "a, " up to the next item
            return Edit(first.start_mark.index, seq.value[j + 1].start_mark.index, "")
        if i > 0:                                      # drop ", a" after the previous item
            return Edit(_last_leaf(seq.value[i - 1]).end_mark.index, _last_leaf(last).end_mark.index, "")
        return Edit(first.start_mark.index, _last_leaf(last).end_mark.index, "")
    prefix = _block_item_prefix(text, nodes[0])
    if prefix is None or any(_block_item_prefix(text, n) is None for n in nodes):
        raise _exotic()
    start = _line_start(text, nodes[0].start_mark.index)
    end = _line_end(text, _last_leaf(nodes[-1]).end_mark.index)
    new = _items_text(text, seq, tokens, style, prefix)
    if not text[start:end].endswith("\n") and new.endswith("\n"):
        new = new[:-1]
    return Edit(start, end, new)


def seq_insert(text: str, seq: yaml.SequenceNode, tokens: list[str], *, before: yaml.Node | None = None,
               after: yaml.Node | None = None) -> Edit:
    """Insert tokens into a sequence: before an item, after an item, or (neither) into an empty one."""
    style = _seq_style(seq)
    if seq.flow_style:
        body = _items_text(text, seq, tokens, style, "")
        if before is not None:
            return Edit(before.start_mark.index, before.start_mark.index, body + ", ")
        if after is not None:
            end = _last_leaf(after).end_mark.index
            return Edit(end, end, ", " + body)
        open_ = seq.start_mark.index + 1                # `[]`
        return Edit(open_, open_, body)
    ref = before if before is not None else after if after is not None else (seq.value[0] if seq.value else None)
    prefix = _block_item_prefix(text, ref) if ref is not None else None
    if prefix is None:
        raise _exotic()
    body = _items_text(text, seq, tokens, style, prefix)
    if before is not None:
        pos = _line_start(text, before.start_mark.index)
        return Edit(pos, pos, body)
    pos = _line_end(text, _last_leaf(after).end_mark.index)
    if not text[:pos].endswith("\n"):
        body = "\n" + body.rstrip("\n")
    return Edit(pos, pos, body)


def _child_indent(text: str, mapping: yaml.MappingNode) -> str:
    k = mapping.value[0][0]
    return " " * k.start_mark.column


def map_set(text: str, mapping: yaml.MappingNode, key: str, value_text: str) -> Edit:
    """Set `key: value` in a block mapping: its value scalar edited in place, or a new line after the last."""
    v = _get(mapping, key)
    if v is not None:
        if not isinstance(v, yaml.ScalarNode) or v.style in ("|", ">"):
            raise BadInput(f"launch: {key} is not a one-line value kvfit can edit")
        return Edit(v.start_mark.index, v.end_mark.index, value_text)
    return map_insert(text, mapping, [f"{key}: {value_text}"])


def map_insert(text: str, mapping: yaml.MappingNode, lines: list[str]) -> Edit:
    """New `key: value` lines (already indented relative to the mapping) after a mapping's last entry."""
    if mapping.flow_style or not mapping.value:
        if mapping.flow_style:
            close = _last_leaf(mapping).end_mark.index if mapping.value else mapping.start_mark.index + 1
            body = ", ".join(ln.strip() for ln in lines)
            return Edit(close, close, (", " if mapping.value else "") + body)
        raise BadInput("launch: an empty mapping kvfit cannot add to")
    indent = _child_indent(text, mapping)
    pos = _line_end(text, _last_leaf(mapping).end_mark.index)
    body = "".join(indent + ln + "\n" for ln in lines)
    if not text[:pos].endswith("\n"):
        body = "\n" + body.rstrip("\n")
    return Edit(pos, pos, body)


def map_delete(text: str, mapping: yaml.MappingNode, key: str) -> Edit | None:
    k = _key(mapping, key)
    if k is None:
        return None
    v = _get(mapping, key)
    start = _line_start(text, k.start_mark.index)
    if text[start:k.start_mark.index].strip() not in ("", "-"):
        raise BadInput(f"launch: {key} does not start its line; kvfit cannot remove it in place")
    if text[start:k.start_mark.index].strip() == "-":
        # the first key of a sequence item: keep the dash for the next key
        nxt = [kk for kk, _ in mapping.value if kk is not k]
        if not nxt:
            raise BadInput(f"launch: {key} is the only key of its item; kvfit cannot remove it in place")
        return Edit(k.start_mark.index, nxt[0].start_mark.index, "")
    return Edit(start, _line_end(text, _last_leaf(v).end_mark.index), "")


# --- vLLM arguments in a YAML sequence ------------------------------------------------------------------

def _tokens(args) -> list[list[str]]:
    from .shell import cli_tokens

    return [cli_tokens(a) for a in args]


def token_edits(text: str, items: list[tuple[yaml.Node, yaml.SequenceNode]], old: tuple[Arg, ...],
                new: tuple[Arg, ...], *, empty: tuple[yaml.SequenceNode, yaml.Node | None] | None) -> list[Edit]:
    """Edits turning the YAML items holding `old` (vLLM's arguments, one token an item) into `new`: changed
    values replace their scalar only; removed arguments drop their items; added ones are inserted where they
    stand. `empty`: where to insert when there is no item yet (a sequence, and the item to insert after)."""
    counts = [len(t) for t in _tokens(old)]
    if sum(counts) != len(items):
        raise BadInput("launch: kvfit cannot line up the YAML items with vLLM's arguments (please report this file)")
    offsets = [0]
    for c in counts:
        offsets.append(offsets[-1] + c)
    edits: list[Edit] = []
    new_toks = _tokens(new)
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, list(old), list(new), autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        olds = items[offsets[i1]:offsets[i2]]
        toks = [t for g in new_toks[j1:j2] for t in g]
        if tag == "replace" and i2 - i1 == j2 - j1 and all(
                old[i1 + k].key == new[j1 + k].key and counts[i1 + k] == len(new_toks[j1 + k])
                for k in range(i2 - i1)):
            for (node, seq), tok in zip(olds, toks):
                if not isinstance(node, yaml.ScalarNode) or node.value != tok:
                    style = node.style if isinstance(node, yaml.ScalarNode) and node.style in ('"', "'", None) \
                        else '"'
                    edits.append(Edit(node.start_mark.index, _last_leaf(node).end_mark.index,
                                      scalar(tok, style, flow=bool(seq.flow_style))))
            continue
        if olds:
            groups: list[tuple[yaml.SequenceNode, list[yaml.Node]]] = []
            for node, seq in olds:
                if groups and groups[-1][0] is seq:
                    groups[-1][1].append(node)
                else:
                    groups.append((seq, [node]))
            for n, (seq, nodes) in enumerate(groups):
                edits.append(seq_replace(text, seq, nodes, toks if n == 0 else []))
            continue
        if not toks:
            continue
        if offsets[i1] < len(items):
            node, seq = items[offsets[i1]]
            edits.append(seq_insert(text, seq, toks, before=node))
        elif items:
            node, seq = items[-1]
            edits.append(seq_insert(text, seq, toks, after=node))
        elif empty is not None:
            seq, after = empty
            edits.append(seq_insert(text, seq, toks, after=after))
        else:
            raise BadInput("launch: nowhere to put new vLLM arguments in this YAML")
    return edits


def _block_scalar(text: str, node: yaml.ScalarNode, value: str) -> str:
    """A literal block scalar (`|`) with new content; its header, indentation and the blank lines after it
    (inside the node, outside the value) kept."""
    s, e = node.start_mark.index, node.end_mark.index
    header_end = text.find("\n", s)
    header = text[s:header_end]
    body = text[header_end + 1:e]
    first = next((ln for ln in body.splitlines() if ln.strip()), "")
    indent = first[:len(first) - len(first.lstrip())] or " " * (node.start_mark.column + 2)
    tail = body[len(body.rstrip()):]
    lines = value.rstrip("\n").split("\n")
    return header + "\n" + "\n".join(indent + ln if ln else "" for ln in lines) + tail


def script_scalar(text: str, node: yaml.ScalarNode, value: str, flow: bool) -> str:
    if node.style == "|":
        return _block_scalar(text, node, value)
    return scalar(value, node.style if node.style in ('"', "'", None) else '"', flow=flow)


# --- k8s ------------------------------------------------------------------------------------------------

@dataclass
class _Container:
    node: yaml.MappingNode
    workload: str                                    # 'Deployment/vllm'
    name: str
    image: str | None
    items: list[tuple[yaml.Node, yaml.SequenceNode]]  # command then args, one per token
    start: int                                        # items[start:] are vLLM's arguments
    program: tuple[str, ...]
    script: yaml.ScalarNode | None                    # `sh -c SCRIPT`
    script_seq: yaml.SequenceNode | None
    gpu_nodes: list[yaml.ScalarNode]
    gpus: int | None
    env: tuple[tuple[str, str], ...]
    group: int | None = None                          # LeaderWorkerSet: pods in one group
    worker_gpu_nodes: list[yaml.ScalarNode] | None = None
    worker_gpus: int | None = None
    ray: bool = False                                 # the leader's script starts a Ray cluster first

    @property
    def names(self) -> list[str]:
        return [self.workload, self.workload.split("/", 1)[1], self.name]


def _seq_items(seq: yaml.Node | None, what: str) -> list[tuple[yaml.Node, yaml.SequenceNode]]:
    if seq is None:
        return []
    if isinstance(seq, yaml.ScalarNode) and seq.tag.endswith(":null"):
        return []
    if not isinstance(seq, yaml.SequenceNode):
        raise BadInput(f"launch: the container's {what} must be a list of strings")
    for n in seq.value:
        if not isinstance(n, yaml.ScalarNode):
            raise BadInput(f"launch: the container's {what} must be a list of strings")
    return [(n, seq) for n in seq.value]


def _image_runs_vllm(image: str | None) -> bool:
    if not image:
        return False
    name = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0].lower()
    return "vllm" in name


def _container(c: yaml.Node, workload: str) -> _Container | None:
    """The container as a vLLM launch, or None when it does not run vLLM."""
    from .shell import _SERVE_START, _command_span, _program

    if not isinstance(c, yaml.MappingNode):
        return None
    image = _str(_get(c, "image"))
    cmd, args = _get(c, "command"), _get(c, "args")
    items = _seq_items(cmd, "command") + _seq_items(args, "args")
    words = [n.value for n, _ in items]
    script = script_seq = None
    program: tuple[str, ...] = ()
    start = 0
    if words and _SHELLS.match(words[0]):
        k = next((i for i, w in enumerate(words[1:], 1) if _SHELL_C.match(w)), None)
        if k is None or k + 1 >= len(words) or _command_span(words[k + 1], _SERVE_START) is None:
            return None
        script, script_seq = items[k + 1]
    elif words:
        program, start = _program(words, 0)
        if program is None:
            if cmd is not None or not _image_runs_vllm(image):
                return None
            program, start = (), 0                    # the image's entrypoint (vllm serve), args are vLLM's
    elif not _image_runs_vllm(image):
        return None
    gpu_nodes, gpus = _gpus(c)
    env = []
    e = _get(c, "env")
    if isinstance(e, yaml.SequenceNode):
        for item in e.value:
            name, value = _str(_get(item, "name")), _get(item, "value")
            if name and isinstance(value, yaml.ScalarNode):
                env.append((name, _go(_data(value))))
    return _Container(c, workload, _str(_get(c, "name")) or "", image, items, start, program, script, script_seq,
                      gpu_nodes, gpus, tuple(env))


def _gpus(c: yaml.Node) -> tuple[list[yaml.ScalarNode], int | None]:
    """A container's `nvidia.com/gpu` nodes (limits, requests) and the count (the limit when both)."""
    gpu_nodes, gpus = [], None
    res = _get(c, "resources")
    for part in ("limits", "requests"):
        n = _get(_get(res, part), GPU_RESOURCE)
        if isinstance(n, yaml.ScalarNode):
            gpu_nodes.append(n)
            if gpus is None:
                try:
                    gpus = int(str(_data(n)).strip())
                except ValueError:
                    raise BadInput(f"launch: {GPU_RESOURCE} must be a whole number of GPUs (got {n.value!r})") \
                        from None
    return gpu_nodes, gpus


def _lws(d: yaml.Node, name: str) -> list[_Container]:
    """The leader's vLLM containers of a LeaderWorkerSet, with the group's size and the workers' GPUs."""
    lwt = _path(d, "spec", "leaderWorkerTemplate")
    raw = _data(_get(lwt, "size"))
    if raw is None:
        size = 1                                     # the API's default
    elif isinstance(raw, int) and not isinstance(raw, bool) and raw >= 1:
        size = raw
    else:
        raise BadInput(f"launch: leaderWorkerTemplate.size must be a whole number of pods (got {raw!r})")
    worker_pod = _path(lwt, "workerTemplate", "spec")
    leader_pod = _path(lwt, "leaderTemplate", "spec") or worker_pod      # no leaderTemplate: the same pod
    worker_nodes: list[yaml.ScalarNode] = []
    worker_gpus = None
    if size > 1:
        ws = _get(worker_pod, "containers")
        for c in ws.value if isinstance(ws, yaml.SequenceNode) else []:
            nodes, n = _gpus(c)
            if nodes:
                worker_nodes, worker_gpus = nodes, n
                break
    out = []
    cs = _get(leader_pod, "containers")
    for c in cs.value if isinstance(cs, yaml.SequenceNode) else []:
        found = _container(c, f"{LWS}/{name}")
        if found is None:
            continue
        found.group = size
        found.worker_gpus = worker_gpus if size > 1 else None
        found.worker_gpu_nodes = [n for n in worker_nodes if all(n is not g for g in found.gpu_nodes)]
        if found.script is not None:
            script = _data(found.script)
            from .shell import _SERVE_START, _command_span

            span = _command_span(script, _SERVE_START)
            found.ray = bool(span and _RAY_HEAD.search(script[:span[0]]))
        out.append(found)
    return out


def _containers(docs: list[yaml.Node]) -> list[_Container]:
    out = []
    for d in docs:
        kind = _str(_get(d, "kind"))
        if kind == "List":
            out += _containers([i for i in (_get(d, "items").value if isinstance(_get(d, "items"), yaml.SequenceNode)
                                            else [])])
            continue
        if kind == LWS:
            out += _lws(d, _str(_path(d, "metadata", "name")) or "?")
            continue
        if kind not in POD_SPEC:
            continue
        pod = _path(d, *POD_SPEC[kind])
        cs = _get(pod, "containers")
        if not isinstance(cs, yaml.SequenceNode):
            continue
        name = _str(_path(d, "metadata", "name")) or "?"
        for c in cs.value:
            found = _container(c, f"{kind}/{name}")
            if found is not None:
                out.append(found)
    return out


def _pick(found: list, at: int | None, name: str | None, what: str):
    """The one at a text position (re-reading a launch's own text), the one named, or the first."""
    if at is not None:
        for f in found:
            if f.node.start_mark.index == at:
                return f
        raise BadInput(f"launch: the {what} moved in the text")
    if name is not None:
        for f in found:
            if name in f.names:
                return f
        raise BadInput(f"launch: no {what} named {name!r}", "Found: " + ", ".join(f.names[0] for f in found))
    return found[0]


def parse_k8s(text: str, name: str | None = None, *, at: int | None = None) -> Launch:
    """The first container of a Deployment / StatefulSet / ... that runs vLLM (or the one named: the
    workload's metadata.name or the container's name)."""
    from .shell import parse_shell, parse_vllm_args

    docs = compose_all(text)
    found = _containers(docs)
    if not found:
        kinds = sorted({k for d in docs if (k := _str(_get(d, "kind")))})
        raise BadInput("launch: no container in this Kubernetes manifest runs vLLM" +
                       (f" (found {', '.join(kinds)})" if kinds else ""),
                       "kvfit reads a Deployment / StatefulSet whose container runs `vllm serve ...` "
                       "(command/args) or the vllm/vllm-openai image.")
    c = _pick(found, at, name, "vLLM container")
    span = (c.node.start_mark.index, c.node.end_mark.index)
    env = c.env
    if c.group is not None:
        # LWS sets these in every container of the group (over the container's own); the leader is worker 0
        env = ((LWS_SIZE, str(c.group)), (LWS_INDEX, "0")) + tuple(kv for kv in env if kv[0] not in (LWS_SIZE,
                                                                                                       LWS_INDEX))
    group = dict(group=c.group, worker_gpus=c.worker_gpus, ray=c.ray)
    if c.script is not None:
        sub = parse_shell(_data(c.script))
        return Launch("k8s", sub.args, sub.program, sub.prefix, image=c.image, env=env, text=text, span=span,
                      gpus=c.gpus, **group)
    words = [n.value for n, _ in c.items[c.start:]]
    args = parse_vllm_args(words, allow_positional_model=not c.program or c.program[-1] == "serve")
    return Launch("k8s", args, c.program, image=c.image, env=env, text=text, span=span, gpus=c.gpus, **group)


def render_k8s(launch: Launch) -> str:
    from .shell import parse_shell, render_shell as render

    text = launch.text or ""
    c = _pick(_containers(compose_all(text)), launch.span[0] if launch.span else None, None, "vLLM container")
    edits: list[Edit] = []
    if launch.pristine != launch.args:
        if c.script is not None:
            old = _data(c.script)
            sub = parse_shell(old)
            s, e = sub.span
            cmd = render(replace(sub, args=launch.args, text=None, span=None))
            was = re.search(r"\\\r?\n([ \t]*)", old[s:e])
            if was is None:
                cmd = re.sub(r" \\\r?\n\s*", " ", cmd)        # a one-line command stays on one line
            else:
                cmd = re.sub(r"\\\n    ", lambda _: "\\\n" + was.group(1), cmd)   # the script's own indentation
            new = old[:s] + cmd + old[e:]
            edits.append(Edit(c.script.start_mark.index, c.script.end_mark.index,
                              script_scalar(text, c.script, new, bool(c.script_seq.flow_style))))
        elif not c.items:                              # the image's entrypoint, no args yet
            toks = [t for g in _tokens(launch.args) for t in g]
            edits.append(map_insert(text, c.node, ["args: [" + ", ".join(json.dumps(t) for t in toks) + "]"]))
        else:
            empty = None
            if c.start == len(c.items):
                args_node = _get(c.node, "args")
                if isinstance(args_node, yaml.SequenceNode):
                    empty = (args_node, args_node.value[-1] if args_node.value else None)
                elif c.items:
                    empty = (c.items[-1][1], c.items[-1][0])
            edits += token_edits(text, c.items[c.start:], launch.pristine or (), launch.args, empty=empty)
    if launch.gpus is not None and launch.gpus != c.gpus:
        for n in c.gpu_nodes + (c.worker_gpu_nodes or []):
            edits.append(Edit(n.start_mark.index, n.end_mark.index,
                              scalar(str(launch.gpus), n.style) if n.style else str(launch.gpus)))
    return apply(text, _merge_inserts(edits))


# --- helm (vLLM production-stack values) ----------------------------------------------------------------

# vllmConfig keys -> vLLM flags, in the order helm/templates/deployment-vllm-multi.yaml passes them.
VLLM_CONFIG = {"enableChunkedPrefill": "enable-chunked-prefill", "enablePrefixCaching": "enable-prefix-caching",
               "maxModelLen": "max-model-len", "dtype": "dtype", "tensorParallelSize": "tensor-parallel-size",
               "pipelineParallelSize": "pipeline-parallel-size",      # the Ray template only
               "maxNumSeqs": "max-num-seqs", "gpuMemoryUtilization": "gpu-memory-utilization",
               "maxLoras": "max-loras", "runner": "runner", "convert": "convert"}
# modelSpec keys -> vLLM flags (before vllmConfig's, except the revision, which comes after extraArgs)
MODEL_SPEC = {"modelURL": "model", "enableLoRA": "enable-lora", "enableTool": "enable-auto-tool-choice",
              "toolCallParser": "tool-call-parser", "modelRevision": "revision"}
_SWITCHES = {"enableLoRA", "enableTool"}               # passed only when true
_CHART_FOR = {v: k for k, v in VLLM_CONFIG.items() if k != "pipelineParallelSize"}
_CHART_FOR.update({v: k for k, v in MODEL_SPEC.items()})
_INT_KEYS = {"maxModelLen", "tensorParallelSize", "pipelineParallelSize", "maxNumSeqs", "maxLoras", "requestGPU"}
# lmcacheConfig.enabled: the chart adds --kv-transfer-config (LMCache); read, never edited
_READ_ONLY = {"lmcacheConfig"}
_RANK = {"modelURL": 0, "enableLoRA": 1, "enableTool": 2, "toolCallParser": 3,
         **{k: 10 + i for i, k in enumerate(VLLM_CONFIG)}, "modelRevision": 60, "lmcacheConfig": 70}


def _rank(a: Arg) -> int:
    return _RANK.get(a.spelling or "", 50)              # extraArgs: 50, after vllmConfig, before modelRevision


def arrange_helm(args: tuple[Arg, ...]) -> tuple[Arg, ...]:
    """Arguments in the order the chart passes them, new ones spelled as the values key that holds them
    (vllmConfig / modelSpec), or as a flag for extraArgs."""
    used = {a.spelling for a in args}
    out = []
    for a in args:
        if a.spelling is None:
            chart = _CHART_FOR.get(a.key)
            a = replace(a, spelling=chart if chart and chart not in used else "--" + a.key)
            used.add(a.spelling)
        out.append(a)
    return tuple(sorted(out, key=_rank))


@dataclass
class _Entry:
    node: yaml.MappingNode
    name: str
    config: yaml.MappingNode | None
    extra: yaml.SequenceNode | None
    ray: bool

    @property
    def names(self) -> list[str]:
        return [self.name]


def _entries(docs: list[yaml.Node]) -> list[_Entry]:
    out = []
    for d in docs:
        specs = _path(d, "servingEngineSpec", "modelSpec")
        if not isinstance(specs, yaml.SequenceNode):
            continue
        for e in specs.value:
            if not isinstance(e, yaml.MappingNode) or _data(_get(e, "enabled")) is False:
                continue
            cfg = _get(e, "vllmConfig")
            cfg = cfg if isinstance(cfg, yaml.MappingNode) else None
            extra = _get(cfg, "extraArgs")
            if extra is not None and not isinstance(extra, yaml.SequenceNode):
                if isinstance(extra, yaml.ScalarNode) and extra.tag.endswith(":null"):
                    extra = None
                else:
                    raise BadInput("launch: vllmConfig.extraArgs must be a list of strings")
            if extra is not None and any(not isinstance(n, yaml.ScalarNode) for n in extra.value):
                raise BadInput("launch: vllmConfig.extraArgs must be a list of strings")
            ray = bool(_data(_path(e, "raySpec", "enabled")))
            out.append(_Entry(e, _str(_get(e, "name")) or "", cfg, extra, ray))
    return out


def parse_helm(text: str, name: str | None = None, *, at: int | None = None) -> Launch:
    """The first enabled servingEngineSpec.modelSpec entry (or the one named), as the chart launches it."""
    from .shell import parse_vllm_args

    docs = compose_all(text)
    found = _entries(docs)
    if not found:
        raise BadInput("launch: no servingEngineSpec.modelSpec entry in this Helm values file",
                       "kvfit reads vLLM production-stack values: servingEngineSpec.modelSpec[] with modelURL "
                       "and vllmConfig.")
    e = _pick(found, at, name, "modelSpec entry")
    args: list[Arg] = []
    url = _get(e.node, "modelURL")
    if url is None:
        raise BadInput(f"launch: modelSpec {e.name or '#1'} has no modelURL")
    args.append(Arg("model", _go(_data(url)), "modelURL"))
    for key in ("enableLoRA", "enableTool", "toolCallParser"):
        v = _data(_get(e.node, key))
        if key in _SWITCHES:
            if v:
                args.append(Arg(MODEL_SPEC[key], True, key))
        elif v:
            args.append(Arg(MODEL_SPEC[key], _go(v), key))
    if e.config is not None:
        cfg = _data(e.config) or {}
        for key, flag in VLLM_CONFIG.items():
            if key == "pipelineParallelSize" and not e.ray:
                continue                                   # deployment-vllm-multi.yaml does not pass it
            if key == "enableChunkedPrefill":
                if key in cfg:
                    args.append(Arg(flag, bool(cfg[key]), key))
            elif key == "enablePrefixCaching":
                # the chart passes --enable-prefix-caching when true and --no-enable-prefix-caching otherwise
                # (absent included); its Ray template passes nothing when it is not true
                if cfg.get(key) or not e.ray:
                    args.append(Arg(flag, bool(cfg.get(key)), key))
            elif key in cfg and cfg[key] is not None:
                args.append(Arg(flag, _go(cfg[key]), key))
    if e.extra is not None:
        args += parse_vllm_args([_go(_data(n)) for n in e.extra.value], allow_positional_model=False)
    rev = _data(_get(e.node, "modelRevision"))
    if rev:
        args.append(Arg("revision", _go(rev), "modelRevision"))
    lmc = _data(_get(e.node, "lmcacheConfig"))
    if isinstance(lmc, dict) and lmc.get("enabled") and not e.ray:
        role = lmc.get("kvRole") or "kv_both"
        if "enablePD" in lmc:
            kv = ('{"kv_connector":"LMCacheConnectorV1","kv_role":"%s","kv_connector_extra_config":'
                  '{"discard_partial_chunks": false, "lmcache_rpc_port": %s}}' % (role, json.dumps(_go(lmc.get("nixlRole")))))
        elif isinstance(cfg := _data(e.config), dict) and _go(cfg.get("v0")) == "1":
            kv = '{"kv_connector":"LMCacheConnector","kv_role":"%s"}' % role
        else:
            kv = '{"kv_connector":"LMCacheConnectorV1","kv_role":"%s"}' % role
        args.append(Arg("kv-transfer-config", kv, "lmcacheConfig"))
    gpus = None
    if not e.ray:
        g = _data(_get(e.node, "requestGPU"))
        if g is not None:
            try:
                gpus = int(float(g))
            except (TypeError, ValueError):
                raise BadInput(f"launch: requestGPU must be a whole number of GPUs (got {g!r})") from None
    image = None
    repo, tag = _data(_get(e.node, "repository")), _data(_get(e.node, "tag"))
    if repo:
        image = f"{repo}:{_go(tag)}" if tag is not None else str(repo)
    env = []
    for where in (_path(docs[0], "servingEngineSpec", "env"), _get(e.node, "env")):
        if isinstance(where, yaml.SequenceNode):
            for item in where.value:
                n, v = _str(_get(item, "name")), _get(item, "value")
                if n and isinstance(v, yaml.ScalarNode):
                    env.append((n, _go(_data(v))))
    span = (e.node.start_mark.index, e.node.end_mark.index)
    return Launch("helm", tuple(args), ("vllm", "serve"), image=image, env=tuple(env), text=text, span=span,
                  gpus=gpus)


def _chart_value(key: str, v: Any, style: str | None) -> str:
    from .shell import native

    if key in _SWITCHES or VLLM_CONFIG.get(key, "").startswith("enable-"):
        return "true" if v is True or str(v).lower() in ("true", "1", "yes", "on") else "false"
    typed = native(VLLM_CONFIG.get(key) or MODEL_SPEC.get(key) or key, v)
    if key in _INT_KEYS and isinstance(typed, str):
        try:
            typed = int(typed)
        except ValueError:
            pass
    if isinstance(typed, (int, float)):
        return _typed_scalar(typed, style)
    return scalar(str(typed), style if style in ('"', "'", None) else '"')


def render_helm(launch: Launch) -> str:
    text = launch.text or ""
    e = _pick(_entries(compose_all(text)), launch.span[0] if launch.span else None, None, "modelSpec entry")
    edits: list[Edit] = []
    old, new = launch.pristine or (), launch.args
    chart = lambda args: {a.spelling: a for a in args if a.spelling in VLLM_CONFIG or a.spelling in MODEL_SPEC}
    extras = lambda args: tuple(a for a in args if not (a.spelling in VLLM_CONFIG or a.spelling in MODEL_SPEC
                                                        or a.spelling in _READ_ONLY))
    oc, nc = chart(old), chart(new)
    config_lines: list[str] = []                       # new vllmConfig keys when there is no vllmConfig yet
    left = {k.value for k, _ in e.config.value} if e.config is not None else set()   # vllmConfig keys after
    for key in sorted(set(oc) | set(nc), key=lambda k: _RANK.get(k, 50)):
        o, n = oc.get(key), nc.get(key)
        if o == n and o is not None:
            continue
        mapping = e.config if key in VLLM_CONFIG else e.node
        if n is None or (key in _SWITCHES and n.value is not True):
            if mapping is not None:
                d = map_delete(text, mapping, key)
                if d is not None:
                    edits.append(d)
                    left.discard(key)
            continue
        node = _get(mapping, key) if mapping is not None else None
        value = _chart_value(key, n.value, node.style if isinstance(node, yaml.ScalarNode) else '"')
        if mapping is None:
            config_lines.append(f"  {key}: {value}")
        else:
            edits.append(map_set(text, mapping, key, value))
            left.add(key)
    ox, nx = extras(old), extras(new)
    if ox != nx:
        if e.extra is not None:
            items = [(n, e.extra) for n in e.extra.value]
            edits += token_edits(text, items, ox, nx, empty=(e.extra, None))
        else:
            toks = [t for g in _tokens(nx) for t in g]
            line = "extraArgs: [" + ", ".join(json.dumps(t) for t in toks) + "]"
            if e.config is not None:
                edits.append(map_insert(text, e.config, [line]))
                left.add("extraArgs")
            else:
                config_lines.append("  " + line)
    if e.config is not None and not left and "enablePrefixCaching" in nc:
        # an emptied vllmConfig would drop the --no-enable-prefix-caching the chart passes now: say it
        edits.append(map_insert(text, e.config, ["enablePrefixCaching: false"]))
    if config_lines:
        edits.append(map_insert(text, e.node, ["vllmConfig:", *config_lines]))
    if launch.gpus is not None and not e.ray:
        g = _get(e.node, "requestGPU")
        if g is None or _data(g) != launch.gpus:
            edits.append(map_set(text, e.node, "requestGPU", str(launch.gpus)))
    return apply(text, _merge_inserts(edits))


def _merge_inserts(edits: list[Edit]) -> list[Edit]:
    """Insertions at one place as one edit: the more indented first (new items of a sequence that ends there
    before new keys of the mapping around it), otherwise in the order they were made."""
    def indent(t: str) -> int:
        t = t.lstrip("\n")
        return len(t) - len(t.lstrip(" "))

    out = [e for e in edits if e.start != e.end]
    at: dict[int, list[Edit]] = {}
    for e in edits:
        if e.start == e.end:
            at.setdefault(e.start, []).append(e)
    for pos, group in at.items():
        group = sorted(group, key=lambda e: -indent(e.text))
        out.append(Edit(pos, pos, "".join(e.text for e in group)))
    return out


# --- a new manifest / values file for a launch written in another form -----------------------------------

def world_size(args: tuple[Arg, ...]) -> int:
    n = 1
    for key in ("tensor-parallel-size", "pipeline-parallel-size", "data-parallel-size"):
        v = None
        for a in args:
            if a.key == key:
                v = a.value
        try:
            n *= max(int(str(v)), 1) if v is not None and not isinstance(v, bool) else 1
        except ValueError:
            pass
    return n


_SECRETISH = re.compile(r"TOKEN|SECRET|PASSWORD|KEY", re.I)


def fresh(source: Launch, form: str, args: tuple[Arg, ...]) -> Launch:
    """The converted launch (args already in the shell forms' strings) for a new manifest / values file."""
    image = source.image if source.form in ("docker", "k8s", "helm") and source.image else "vllm/vllm-openai:latest"
    gpus = source.gpu_count if source.form in ("k8s", "helm") else None
    gpus = max(gpus or 0, world_size(args))
    env = tuple((k, v) for k, v in source.environment.items()
                if k != "CUDA_VISIBLE_DEVICES" and not _SECRETISH.search(k)
                and not (source.group is not None and k in (LWS_SIZE, LWS_INDEX)))   # LWS's own, not the user's
    if form == "helm":
        args = arrange_helm(tuple(replace(a, spelling=None) if a.key != "model" else Arg("model", a.value, "modelURL")
                                  for a in args))
        if not any(a.key == "enable-prefix-caching" for a in args):
            args = arrange_helm(args + (Arg("enable-prefix-caching", True, "enablePrefixCaching"),))
        return Launch("helm", args, ("vllm", "serve"), image=image, env=env, gpus=gpus)
    args = tuple(sorted((Arg("model", a.value, POSITIONAL) if a.key == "model" else a for a in args),
                        key=lambda a: 0 if a.key == "model" else 1))
    return Launch("k8s", args, ("vllm", "serve"), image=image, env=env, gpus=gpus)


def _dns_name(model: str | None) -> str:
    base = (model or "vllm").rstrip("/").rsplit("/", 1)[-1].lower()
    base = re.sub(r"[^a-z0-9-]+", "-", base).strip("-")[:40].strip("-")
    return base or "vllm"


def _env_lines(env: tuple[tuple[str, str], ...], indent: str) -> str:
    return "".join(f"{indent}- name: {k}\n{indent}  value: {json.dumps(v)}\n" for k, v in env)


def new_k8s(launch: Launch) -> str:
    toks = [t for g in _tokens(launch.args) for t in g]
    name = _dns_name(launch.model)
    gpus = launch.gpus or world_size(launch.args)
    out = [
        "apiVersion: apps/v1",
        "kind: Deployment",
        "metadata:",
        f"  name: {name}",
        "spec:",
        "  replicas: 1",
        "  selector:",
        "    matchLabels:",
        f"      app: {name}",
        "  template:",
        "    metadata:",
        "      labels:",
        f"        app: {name}",
        "    spec:",
        "      containers:",
        "        - name: vllm",
        f"          image: {launch.image or 'vllm/vllm-openai:latest'}",
        '          command: ["vllm", "serve"]',
        "          args:",
        *[f"            - {json.dumps(t)}" for t in toks],
    ]
    text = "\n".join(out) + "\n"
    if launch.env:
        text += "          env:\n" + _env_lines(launch.env, "            ")
    text += ("          ports:\n"
             "            - containerPort: 8000\n"
             "          resources:\n"
             "            limits:\n"
             f'              {GPU_RESOURCE}: "{gpus}"\n')
    return text


def new_helm(launch: Launch) -> str:
    image = launch.image or "vllm/vllm-openai:latest"
    repo, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
    gpus = launch.gpus or world_size(launch.args)
    lines = ["servingEngineSpec:", "  modelSpec:",
             f"  - name: {json.dumps(_dns_name(launch.model))}",
             f"    repository: {json.dumps(repo)}",
             f"    tag: {json.dumps(tag)}"]
    spec = {a.spelling: a for a in launch.args if a.spelling in MODEL_SPEC}
    for key in ("modelURL", "enableLoRA", "enableTool", "toolCallParser", "modelRevision"):
        if key in spec:
            lines.append(f"    {key}: {_chart_value(key, spec[key].value, chr(34))}")
    lines += ["    replicaCount: 1",
              "    requestCPU: 8              # the chart requires CPU and memory requests: size them for your nodes",
              '    requestMemory: "32Gi"',
              f"    requestGPU: {gpus}",
              "    vllmConfig:"]
    for a in launch.args:
        if a.spelling in VLLM_CONFIG:
            note = "   # vLLM's default; without it the chart passes --no-enable-prefix-caching" \
                if a.spelling == "enablePrefixCaching" else ""
            lines.append(f"      {a.spelling}: {_chart_value(a.spelling, a.value, chr(34))}{note}")
    extra = [t for g in _tokens(tuple(a for a in launch.args if a.spelling not in VLLM_CONFIG
                                      and a.spelling not in MODEL_SPEC)) for t in g]
    if extra:
        lines.append("      extraArgs: [" + ", ".join(json.dumps(t) for t in extra) + "]")
    text = "\n".join(lines) + "\n"
    if launch.env:
        text += "    env:\n" + _env_lines(launch.env, "      ")
    return text

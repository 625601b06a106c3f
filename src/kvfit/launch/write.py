"""Writing a launch back: in its own form (only the changed arguments edited, the user's spelling, comments
and order kept) or converted to another form (serve, docker, yaml, python, env, k8s, helm; the last two in
kube.py)."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import replace
from typing import Any


from ..errors import BadInput
from .grammar import _FLOAT, _HUMAN_INT, _INT, _JSON, FORMS, FRONTEND, KIND
from .model import POSITIONAL, Arg, Expr, Launch
from .shell import (_arg_groups, _cli_str, _lines, _render_docker, _render_serve, cli_tokens, native,  # noqa: F401
                    quote)
from ..units import parse_human_int


def yaml_scalar(text: str) -> Any:
    """A plain scalar as PyYAML's safe_load resolves it (YAML 1.1: yes/no/on/off are booleans, 0o12 octal ...)."""
    import yaml          # only on the YAML path (PyYAML costs ~15 ms of start-up)

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _strip_comment(s: str) -> str:
    """Drop a trailing ' # comment' outside quotes."""
    q = None
    for i, ch in enumerate(s):
        if q:
            if ch == q:
                q = None
            continue
        if ch in "'\"" and (i == 0 or s[i - 1] in " \t[{,:"):
            q = ch
        elif ch == "#" and (i == 0 or s[i - 1] in " \t"):
            return s[:i].rstrip()
    return s.rstrip()


# --- values ---------------------------------------------------------------------------------------------

def _yaml_str(s: str) -> str:
    if (s and re.match(r"^[A-Za-z0-9_./~][A-Za-z0-9_./~+=@ -]*$", s) and not s.endswith(" ")
            and isinstance(yaml_scalar(s), str) and " #" not in s):
        return s
    return json.dumps(s)


def _yaml_flow(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return repr(v) if isinstance(v, float) else str(v)
    if isinstance(v, str):
        s = _yaml_str(v)
        return s if s == v and not re.search(r"[,\[\]{}]", v) else json.dumps(v)
    if isinstance(v, Expr):
        return json.dumps(v.src)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_yaml_flow(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_yaml_flow(str(k))}: {_yaml_flow(x)}" for k, x in v.items()) + "}"
    return json.dumps(str(v))


def _yaml_value(v: Any, indent: int) -> str:
    if isinstance(v, dict) and v:
        pad = " " * (indent + 2)
        return "\n" + "\n".join(f"{pad}{_yaml_key(str(k))}:{_yaml_value(x, indent + 2)}" for k, x in v.items())
    if isinstance(v, str):
        return " " + _yaml_str(v)
    return " " + _yaml_flow(v)


def _yaml_key(k: str) -> str:
    return k if re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", k) and isinstance(yaml_scalar(k), str) else json.dumps(k)


def _render_yaml(launch: Launch) -> str:
    lines = []
    for a in launch.args:
        if a.key in ("", "*", "**"):
            continue
        key = a.spelling if a.spelling and not a.spelling.startswith(("-", "#")) and launch.form == "yaml" else a.key
        lines.append(f"{_yaml_key(key)}:{_yaml_value(a.value, 0)}")
    return "\n".join(lines) + "\n"


def py_literal(v: Any) -> str:
    if isinstance(v, Expr):
        return v.src
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(py_literal(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{py_literal(k)}: {py_literal(x)}" for k, x in v.items()) + "}"
    return repr(v)


def _py_items(launch: Launch) -> list[str]:
    items = []
    for a in launch.args:
        if a.key == "*":
            items.append("*" + py_literal(a.value))
        elif a.key == "**":
            items.append("**" + py_literal(a.value))
        elif a.spelling == POSITIONAL or a.key == "" or (a.spelling or "").startswith("#"):
            items.append(py_literal(a.value))
        else:
            name = a.spelling if launch.form == "python" and a.spelling and a.spelling.isidentifier() \
                else a.key.replace("-", "_")
            if not name.isidentifier():
                continue
            items.append(f"{name}={py_literal(a.value)}")
    return items


def _render_call(launch: Launch, indent: str) -> str:
    name = launch.program[0] if launch.program else "LLM"
    items = _py_items(launch)
    one = f"{name}(" + ", ".join(items) + ")"
    if len(one) + len(indent) <= 88 and len(items) <= 3:
        return one
    inner = indent + "    "
    return f"{name}(\n" + "".join(f"{inner}{it},\n" for it in items) + f"{indent})"


def _render_python(launch: Launch) -> str:
    if launch.text is not None and launch.span is not None and launch.form == "python":
        start, end = launch.span
        line_start = launch.text.rfind("\n", 0, start) + 1
        line = launch.text[line_start:start]
        indent = line[:len(line) - len(line.lstrip())]
        return launch.text[:start] + _render_call(launch, indent) + launch.text[end:]
    name = launch.program[0] if launch.program else "LLM"
    target = launch.prefix[0] if launch.prefix else ("llm" if name == "LLM" else "engine_args")
    return f"from vllm import {name}\n\n{target} = {_render_call(launch, '')}\n"


def _env_value(v: Any) -> str:
    if isinstance(v, bool):
        s = "true" if v else "false"
    elif isinstance(v, (list, tuple)):
        s = " ".join(_cli_str(x) for x in v)
    elif isinstance(v, dict):
        s = json.dumps(v)
    elif isinstance(v, Expr):
        s = v.src
    elif v is None:
        s = ""
    else:
        s = _cli_str(v)
    if s != s.strip() or "\n" in s or (len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"") or " #" in s:
        return json.dumps(s)
    return s


def _render_env(launch: Launch) -> str:
    lines = []
    for a in launch.args:
        if a.key in ("", "*", "**"):
            continue
        if launch.form == "env" and a.spelling:
            key = a.spelling
        else:
            key = "MODEL_NAME" if a.key == "model" else a.key.upper().replace("-", "_").replace(".", "_")
        lines.append(f"{key}={_env_value(a.value)}")
    for k, v in launch.env:
        lines.append(f"{k}={_env_value(v)}")
    return "\n".join(lines) + "\n"


_TOP_KEY = re.compile(r"""^(?P<key>"[^"]*"|'[^']*'|[A-Za-z_][\w.-]*)\s*:(?P<rest>.*)$""")
_ENV_LINE = re.compile(r"^(?P<export>\s*(?:export\s+)?)(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)=(?P<rest>.*)$")


def _edit_lines(launch: Launch) -> str | None:
    """A YAML config or env file with only the changed lines rewritten (comments and order kept); None
    when a change is not a one-line value (then the file is written afresh)."""
    text, before = launch.text or "", launch.pristine or ()
    lines = text.splitlines()
    pattern = _TOP_KEY if launch.form == "yaml" else _ENV_LINE
    where: dict[str, list[int]] = {}
    for i, ln in enumerate(lines):
        m = pattern.match(ln)
        if m:
            key = m.group("key").strip("\"'")
            where.setdefault(key, []).append(i)
    old = {a.spelling: a for a in before if a.spelling}
    new = {a.spelling or "": a for a in launch.args}
    if len(old) != len(before) or len(new) != len(launch.args):
        return None                                       # repeated keys: write afresh

    def line_for(a: Arg) -> str | None:
        if launch.form == "yaml":
            if isinstance(a.value, dict) and a.value:
                return None
            return f"{a.spelling or a.key}:{_yaml_value(a.value, 0)}"
        return f"{a.spelling or a.key}={_env_value(a.value)}"

    def comment(ln: str) -> str:
        body = _strip_comment(ln) if launch.form == "yaml" else ln.split(" #", 1)[0].rstrip()
        tail = ln[len(body):]
        return tail if tail.strip().startswith("#") else ""

    drop: set[int] = set()
    for spelling, a in old.items():
        found = where.get(spelling)
        if not found:
            return None
        # a repeated key: its value in force (the last) moves to its first line, where a YAML reader
        # orders it; the other lines go
        i = found[0]
        if len(found) > 1:
            lines[i] = lines[found[-1]]
            drop.update(found[1:])
        if launch.form == "yaml" and (isinstance(a.value, dict) and a.value or
                                      _TOP_KEY.match(lines[i]).group("rest").strip() in ("", "|", ">")):
            if spelling in new and new[spelling] == a:
                continue
            return None                                   # a block value: not a one-line edit
        if spelling not in new:
            drop.add(i)
        elif new[spelling] != a:
            ln = line_for(new[spelling])
            if ln is None:
                return None
            prefix = _ENV_LINE.match(lines[i]).group("export") if launch.form == "env" else ""
            lines[i] = prefix + ln + comment(lines[i])
    appended = []
    for spelling, a in new.items():
        if spelling not in old:
            ln = line_for(a)
            if ln is None:
                return None
            appended.append(ln)
    out = [ln for i, ln in enumerate(lines) if i not in drop] + appended
    return "\n".join(out) + "\n"


def _splice(launch: Launch, command: str) -> str:
    if launch.text is not None and launch.span is not None:
        s, e = launch.span
        return launch.text[:s] + command + launch.text[e:]
    return command


def render(launch: Launch, form: str | None = None, width: int = 88) -> str:
    """The launch as text in `form` (default: its own). A launch read from a script or a Python file is
    written back into that file's text, only the command or call replaced. Shell forms longer than `width`
    put one flag per line, continued with ` \\` (so a terminal selection pastes as one command)."""
    form = form or launch.form
    if form in ("k8s", "helm"):
        from . import kube

        if form == launch.form and launch.text is not None:
            return kube.render_k8s(launch) if form == "k8s" else kube.render_helm(launch)
        launch = convert(launch, form)
        return kube.new_k8s(launch) if form == "k8s" else kube.new_helm(launch)
    if form == launch.form and launch.unchanged:
        return launch.text
    if form != launch.form:
        launch = convert(launch, form)
    if form == "serve":
        return _splice(launch, _render_serve(launch, width))
    if form == "docker":
        return _splice(launch, _render_docker(launch, width))
    if form in ("yaml", "env") and launch.text is not None and launch.pristine is not None \
            and not (form == "env" and launch.env != _env_pairs(launch)):
        edited = _edit_lines(launch)
        if edited is not None:
            return edited
    if form == "yaml":
        return _render_yaml(launch)
    if form == "python":
        return _render_python(launch)
    if form == "env":
        return _render_env(launch)
    raise BadInput(f"unknown launch form {form!r}", "Forms: " + ", ".join(FORMS))


def _env_pairs(launch: Launch) -> tuple[tuple[str, str], ...]:
    return launch.env


def convert(launch: Launch, form: str) -> Launch:
    """The same vLLM arguments in another form (typed for YAML / Python, strings for the shell forms).
    Frontend-only flags (--port, --host, ...) are dropped for Python, which has no server."""
    if form == launch.form:
        return launch
    typed = form in ("yaml", "python")
    args: list[Arg] = []
    dotted: dict[str, dict] = {}
    # a LeaderWorkerSet's leader: the variables LWS sets in its pod, written as their values outside the manifest
    lws = {f"$({k})": v for k, v in launch.env if k in ("LWS_GROUP_SIZE", "LWS_WORKER_INDEX")} \
        if launch.group is not None else {}
    for a in launch.args:
        if a.key in ("*", "**"):
            continue
        if lws and isinstance(a.value, (str, tuple)):
            a = replace(a, value=_substitute(a.value, lws))
        if a.key == "":
            continue
        if form == "python" and a.key in FRONTEND:
            continue
        if "." in a.key and typed:
            head, *rest = a.key.split(".")
            d = dotted.setdefault(head, {})
            for part in rest[:-1]:
                d = d.setdefault(part, {})
            d[rest[-1]] = native(a.key, a.value)
            continue
        v = native(a.key, a.value) if typed else _shell_value(a.key, a.value)
        if isinstance(v, Expr):
            continue
        if a.key == "model":
            args.append(Arg("model", v, "model" if form in ("yaml", "python") else
                            ("MODEL_NAME" if form == "env" else ("--model" if form == "docker" else POSITIONAL))))
            continue
        args.append(Arg(a.key, v, None))
    for head, d in dotted.items():
        args.append(Arg(head, d, None))
    if form in ("k8s", "helm"):
        from .kube import fresh

        return fresh(launch, form, tuple(args))
    # a positional model goes first in the shell forms
    if form in ("serve", "docker"):
        args.sort(key=lambda x: 0 if x.key == "model" else 1)
    program: tuple[str, ...] = ()
    image = None
    groups: tuple[tuple[str, ...], ...] = ()
    inner: tuple[str, ...] = ()
    if form == "serve":
        program = ("vllm", "serve")
    elif form == "docker":
        program = ("docker", "run")
        if launch.form == "docker":
            groups, image, inner = launch.docker, launch.image, launch.inner
        else:
            groups = (("--runtime", "nvidia"), ("--gpus", "all"),
                      ("-v", "~/.cache/huggingface:/root/.cache/huggingface"), ("--env", "HF_TOKEN"),
                      ("-p", "8000:8000"), ("--ipc=host",))
            image = "vllm/vllm-openai:latest"
    elif form == "python":
        program = launch.program if launch.form == "python" else ("LLM",)
    prefix = launch.prefix if form in ("serve", "docker") and launch.form in ("serve", "docker") else ()
    return Launch(form, tuple(args), program, prefix, groups, image, inner)


def _substitute(v: str | tuple, subs: dict[str, str]) -> str | tuple:
    if isinstance(v, tuple):
        return tuple(_substitute(x, subs) if isinstance(x, str) else x for x in v)
    for ref, value in subs.items():
        v = v.replace(ref, value)
    return v


def _shell_value(key: str, v: Any) -> Any:
    if isinstance(v, bool) or isinstance(v, Expr) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        if key in _JSON:
            return json.dumps(v)
        return tuple(_cli_str(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v)
    return _cli_str(v)


# --- changing a launch ------------------------------------------------------------------------------

def updated(launch: Launch, changes: dict[str, Any]) -> Launch:
    """Set (or with None, remove) arguments, keeping the user's spelling and order. A changed value replaces
    the last occurrence in place; earlier duplicates go; a new argument is appended."""
    args = list(launch.args)
    typed = launch.form in ("yaml", "python")
    for key, value in changes.items():
        idx = [i for i, a in enumerate(args) if a.key == key]
        if value is None or (value is False and KIND.get(key) != "bool" and not typed):
            for i in reversed(idx):
                del args[i]
            continue
        if value is False and not idx and KIND.get(key) != "bool":
            continue
        v = value if typed else _shell_value(key, value)
        if launch.form == "env":
            v = _env_value(v) if not isinstance(v, str) else v
        if idx:
            last = args[idx[-1]]
            spelling, joined = last.spelling, last.joined
            if v is True and joined:
                joined = False
            if v is False and spelling and spelling.startswith("-") and not typed:
                spelling = None
            args[idx[-1]] = Arg(key, v, spelling, joined)
            for i in reversed(idx[:-1]):
                del args[i]
        else:
            spelling = None
            if launch.form == "env":
                spelling = key.upper().replace("-", "_")
            elif launch.form == "python":
                spelling = key.replace("-", "_")
            args.append(Arg(key, v, spelling))
    if launch.form not in ("k8s", "helm"):
        return replace(launch, args=tuple(args))
    from .kube import arrange_helm, world_size

    new = replace(launch, args=arrange_helm(tuple(args)) if launch.form == "helm" else tuple(args))
    if launch.gpus is not None and launch.group is not None:     # LWS: each of the group's pods, its share
        if world_size(new.args) > launch.gpus * launch.group:
            new = replace(new, gpus=-(-world_size(new.args) // launch.group))
    elif launch.gpus is not None and world_size(new.args) > launch.gpus:
        new = replace(new, gpus=world_size(new.args))        # the pod asks for the GPUs the launch uses
    return new


def argv(launch: Launch) -> list[str]:
    """vLLM's arguments as shell words (what `vllm serve` would receive), model first."""
    return [t for g in _arg_groups(convert(launch, "serve").args) for t in g]


# --- what kvfit reads from a launch --------------------------------------------------------------------


def _more_ids(ids: list[str], n: int) -> list[str]:
    """`ids` extended to n devices with the next indices not already listed (0 -> 0,1; 3 -> 3,4)."""
    out = list(ids[:n])
    nums = [int(x) for x in ids if x.strip().isdigit()]
    k = (max(nums) + 1) if nums else 0
    while len(out) < n:
        if str(k) not in out:
            out.append(str(k))
        k += 1
    return out


def with_gpus(launch: Launch, n: int) -> Launch:
    """The launch with its GPU pin (docker --gpus device list or count, CUDA_VISIBLE_DEVICES) widened or
    narrowed to n GPUs; unchanged when it pins none or already n."""
    count, _ = launch.gpu_pin
    if count is None or count == n:
        return launch
    if launch.group is not None:                      # LWS: each pod of the group asks for its share
        return replace(launch, gpus=-(-n // launch.group))
    if launch.gpus is not None:                       # k8s / helm: the pod asks for n GPUs
        return replace(launch, gpus=n)
    groups = []
    for g in launch.docker:
        if g[0].startswith("--gpus"):
            joined = "=" in g[0]
            value = g[0].split("=", 1)[1] if joined else (g[1] if len(g) > 1 else "")
            quote = "'" if value.startswith("'") else ""
            inner = value.strip("'")
            dq = '"' if inner.startswith('"') else ""
            inner = inner.strip('"')
            if inner.startswith("device="):
                new = "device=" + ",".join(_more_ids([x for x in inner[7:].split(",") if x.strip()], n))
            else:
                new = str(n)
            new = f"{quote}{dq}{new}{dq}{quote}"
            g = (f"--gpus={new}",) if joined else (g[0], new)
        elif g[0] in ("-e", "--env") and len(g) == 2 and g[1].startswith("CUDA_VISIBLE_DEVICES="):
            ids = [x for x in g[1].split("=", 1)[1].split(",") if x.strip()]
            g = (g[0], "CUDA_VISIBLE_DEVICES=" + ",".join(_more_ids(ids, n)))
        groups.append(tuple(g))
    prefix = []
    for tok in launch.prefix:
        if tok.startswith("CUDA_VISIBLE_DEVICES="):
            ids = [x for x in tok.split("=", 1)[1].split(",") if x.strip()]
            tok = "CUDA_VISIBLE_DEVICES=" + ",".join(_more_ids(ids, n))
        prefix.append(tok)
    env = []
    for k, v in launch.env:
        if k == "CUDA_VISIBLE_DEVICES":
            v = ",".join(_more_ids([x for x in v.split(",") if x.strip()], n))
        env.append((k, v))
    return replace(launch, docker=tuple(groups), prefix=tuple(prefix), env=tuple(env))

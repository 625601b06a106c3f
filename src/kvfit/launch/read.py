"""Reading a launch from the forms people paste: `vllm serve ...` and `python -m vllm...` command lines and
shell scripts, `docker run ... vllm/vllm-openai ...`, vLLM YAML `--config` files (PyYAML, as vLLM reads them),
Python `LLM(...)` calls (read with `ast`, never evaluated) and KEY=VALUE env files; Kubernetes manifests and
production-stack Helm values in kube.py. Pure: the caller reads files.
"""

from __future__ import annotations

import ast
import re
import shlex
from typing import Any


from ..errors import BadInput
from .grammar import ASSIGN, FORMS, KIND, canonical, is_flag, kind_of
from .model import POSITIONAL, Arg, Expr, Launch
from .shell import (_DOCKER_START, _SERVE_START, _command_span, _program, parse_argv, parse_shell,  # noqa: F401
                    parse_vllm_args, split_shell)

# --- CLI arguments (serve and docker) ---------------------------------------------------------------

def yaml_load(text: str):
    """A YAML document as vLLM's --config reader loads it (PyYAML's safe_load)."""
    import yaml          # only on the YAML path (PyYAML costs ~15 ms of start-up)

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise BadInput(f"YAML: {e}") from None
    except RecursionError:
        raise BadInput("YAML: nested too deeply to read") from None


def parse_yaml(text: str) -> Launch:
    data = yaml_load(text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadInput("launch: a vLLM --config file must be a mapping of `key: value` lines")
    args = []
    for k, v in data.items():
        if not isinstance(k, str):
            raise BadInput(f"launch: config key {k!r} is not a string")
        key, _ = canonical("--" + k)
        args.append(Arg(key, v, k))
    return Launch("yaml", tuple(args), text=text)


# --- Python (LLM / EngineArgs calls) --------------------------------------------------------------------

CALLS = ("LLM", "EngineArgs", "AsyncEngineArgs", "AsyncLLM")


def _call_name(node: ast.Call) -> str | None:
    f = node.func
    name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
    return name if name in CALLS else None


def _literal(node: ast.AST, text: str) -> Any:
    try:
        v = ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return Expr(ast.get_source_segment(text, node) or "")
    if v is Ellipsis or isinstance(v, (bytes, complex, set, frozenset)):
        return Expr(ast.get_source_segment(text, node) or "")
    if isinstance(v, tuple):
        return list(v)
    return v


def _offsets(text: str) -> list[int]:
    out, pos = [], 0
    for line in text.splitlines(keepends=True):
        out.append(pos)
        pos += len(line)
    out.append(pos)
    return out


def parse_python(text: str) -> Launch:
    """The first LLM(...) / EngineArgs(...) call in a Python snippet or file; literals only, never evaluated."""
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise BadInput(f"launch: Python does not parse (line {e.lineno}: {e.msg})") from None
    call = None
    target: tuple[str, ...] = ()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node):
            call = node
            break
    if call is None:
        raise BadInput("launch: no LLM(...) or EngineArgs(...) call found in the Python code",
                       "kvfit reads `LLM(model=..., max_model_len=...)` with literal arguments.")
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and node.value is call and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            target = (node.targets[0].id,)
    args: list[Arg] = []
    for k, a in enumerate(call.args):
        if isinstance(a, ast.Starred):
            args.append(Arg("*", Expr(ast.get_source_segment(text, a.value) or ""), "*"))
        elif k == 0:
            args.append(Arg("model", _literal(a, text), POSITIONAL))
        else:
            args.append(Arg("", _literal(a, text), f"#{k}"))
    for kw in call.keywords:
        if kw.arg is None:
            args.append(Arg("**", Expr(ast.get_source_segment(text, kw.value) or ""), "**"))
            continue
        key, _ = canonical("--" + kw.arg)
        args.append(Arg(key, _literal(kw.value, text), kw.arg))
    off = _offsets(text)
    span = (off[call.lineno - 1] + call.col_offset, off[call.end_lineno - 1] + call.end_col_offset)
    return Launch("python", tuple(args), (_call_name(call),), target, text=text, span=span)


# --- env (KEY=VALUE lines) ------------------------------------------------------------------------------

_ENV_MODEL = ("MODEL_NAME", "MODEL")
# variables vLLM, Hugging Face, CUDA and PyTorch read from the environment themselves
_ENV_ONLY = ("VLLM_", "HF_", "HUGGING_FACE", "CUDA_", "NCCL_", "PYTORCH_", "TORCH_", "TRANSFORMERS_", "OMP_")


def parse_env(text: str) -> Launch:
    args: list[Arg] = []
    env: list[tuple[str, str]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, eq, value = line.partition("=")
        if not eq or not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", key):
            raise BadInput(f"launch: env line {n} is not KEY=VALUE: {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        if key.upper() in _ENV_MODEL:
            args.append(Arg("model", value, key))
            continue
        name, _ = canonical("--" + key.lower())
        if name in KIND and not key.upper().startswith(_ENV_ONLY):
            args.append(Arg(name, value, key))
        else:
            env.append((key, value))
    return Launch("env", tuple(args), env=tuple(env), text=text)


# --- detection ------------------------------------------------------------------------------------------

def detect(text: str, filename: str | None = None) -> str:
    name = (filename or "").lower()
    if not name.endswith((".py", ".env", ".toml")):
        from .kube import sniff               # PyYAML: only when the text may be YAML

        kube = sniff(text)                      # a Kubernetes manifest or Helm values: before any `vllm serve` line
        if kube:
            return kube
    if name.endswith((".yaml", ".yml")):
        return "yaml"
    if name.endswith(".py"):
        return "python"
    if name.endswith(".env") or name.rsplit("/", 1)[-1] == ".env":
        return "env"
    if name.endswith(".toml"):
        raise BadInput(f"{filename} looks like a kvfit manifest", "Use `kvfit check --manifest FILE`.")
    for line in text.splitlines():
        s = line.strip()
        if _DOCKER_START.match(s):
            return "docker"
        if _SERVE_START.match(s):
            return "serve"
    if re.search(r"\b(?:LLM|EngineArgs|AsyncEngineArgs)\s*\(", text):
        return "python"
    sig = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if sig and all(re.match(r"^(?:export\s+)?[A-Za-z_][A-Za-z0-9_.-]*=", ln) for ln in sig):
        return "env"
    if sig and all(re.match(r"^[\"']?[A-Za-z_][\w.-]*[\"']?\s*:", ln) or ln.startswith(("-", " ")) for ln in sig):
        return "yaml"
    raise BadInput("launch: cannot tell which form this is",
                   "kvfit reads `vllm serve ...`, `docker run ...`, vLLM YAML configs, Python LLM(...) and KEY=VALUE env files.")


def parse(text: str, form: str | None = None, filename: str | None = None) -> Launch:
    """Any form; `form` None detects it from the file name or the text."""
    form = form or detect(text, filename)
    if form in ("serve", "docker"):
        launch = parse_shell(text)
        if launch.form != form:
            raise BadInput(f"launch: expected a {form} command, found a {launch.form} one")
        return launch
    if form == "yaml":
        return parse_yaml(text)
    if form == "python":
        return parse_python(text)
    if form == "env":
        return parse_env(text)
    if form == "k8s":
        from .kube import parse_k8s

        return parse_k8s(text)
    if form == "helm":
        from .kube import parse_helm

        return parse_helm(text)
    raise BadInput(f"unknown launch form {form!r}", "Forms: " + ", ".join(FORMS))



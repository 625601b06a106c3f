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

# --- CLI arguments (serve and docker) ---------------------------------------------------------------

def parse_vllm_args(tokens: list[str], allow_positional_model: bool = True) -> tuple[Arg, ...]:
    """vLLM's own arguments as argparse would read them (given its table of flags)."""
    args: list[Arg] = []
    have_model = False
    j, n = 0, len(tokens)
    while j < n:
        tok = tokens[j]
        if not is_flag(tok):
            if allow_positional_model and not have_model:
                args.append(Arg("model", tok, POSITIONAL))
                have_model = True
            else:
                args.append(Arg("", tok, ""))
            j += 1
            continue
        if tok.startswith("-O") and tok != "-O" and not tok.startswith("--"):
            level = tok[3:] if tok[2:3] == "=" else tok[2:]
            args.append(Arg("optimization-level", level, "-O", joined=True))
            j += 1
            continue
        joined = tok.startswith("--") and "=" in tok
        name, raw = (tok.split("=", 1) if joined else (tok, None))
        key, negated = canonical(name)
        kind = kind_of(key)
        j += 1
        if joined:
            value: Any = raw
        elif negated:
            value = False
        elif kind in ("bool", "true"):
            value = True
        elif kind == "one":
            if j >= n or is_flag(tokens[j]):
                raise BadInput(f"launch: {name} needs a value")
            value = tokens[j]
            j += 1
        else:                                   # multi, optional, unknown: every following non-flag token
            vals = []
            while j < n and not is_flag(tokens[j]):
                vals.append(tokens[j])
                j += 1
            if kind == "multi" and not vals:
                raise BadInput(f"launch: {name} needs at least one value")
            if kind == "multi":
                value = tuple(vals)
            else:
                value = True if not vals else vals[0] if len(vals) == 1 else tuple(vals)
        if key == "model":
            have_model = True
        args.append(Arg(key, value, name, joined))
    return tuple(args)


def split_shell(text: str) -> list[str]:
    text = re.sub(r"\\\r?\n", " ", text)
    try:
        return shlex.split(text, comments=True)
    except ValueError as e:
        raise BadInput(f"launch: cannot split the command line ({e})", "Check the quotes.") from None


_SERVE_START = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*(?:exec\s+|nohup\s+|sudo\s+(?:-E\s+)?)*"
                          r"(?:\S*/)?(?:vllm\s+serve\b|python[0-9.]*\s+-m\s+vllm\.entrypoints\.)")
_DOCKER_START = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*(?:exec\s+|sudo\s+(?:-E\s+)?)*"
                           r"(?:docker|podman)\s+(?:container\s+)?run\b")


def _command_span(text: str, start_re: re.Pattern) -> tuple[int, int] | None:
    """Where the command starts and ends in a script: the first matching line and its continuations."""
    pos = 0
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if start_re.match(line.strip()):
            start = pos + len(line) - len(line.lstrip())
            end = pos + len(line)
            k = i
            while lines[k].rstrip("\r\n").endswith("\\") and k + 1 < len(lines):
                k += 1
                end += len(lines[k])
            body = text[start:end]
            return start, start + len(body.rstrip("\r\n"))
        pos += len(line)
    return None


_PROGRAM_PREFIX = {"exec", "nohup", "sudo", "-E"}


def parse_argv(tokens: list[str], *, text: str | None = None, span: tuple[int, int] | None = None) -> Launch:
    """A launch given as shell words: `vllm serve ...`, `python -m vllm.entrypoints...`, `docker run ...`."""
    tokens = list(tokens)
    i = 0
    prefix: list[str] = []
    while i < len(tokens) and (ASSIGN.match(tokens[i]) or tokens[i] in _PROGRAM_PREFIX):
        prefix.append(tokens[i])
        i += 1
    if i >= len(tokens):
        raise BadInput("launch: no command given", "Pass `-- vllm serve MODEL ...` or `-- docker run ... vllm/vllm-openai ...`.")
    head = tokens[i]
    base = head.rsplit("/", 1)[-1]
    if base in ("docker", "podman"):
        return _parse_docker(tokens, i, tuple(prefix), text, span)
    program, rest = _program(tokens, i)
    if program is None:
        raise BadInput(f"launch: {' '.join(tokens[i:i + 3])!r} is not a vLLM launch kvfit reads",
                       "kvfit reads `vllm serve MODEL ...`, `python -m vllm.entrypoints.openai.api_server ...` and "
                       "`docker run ... vllm/vllm-openai ...`; YAML configs and Python files with --launch FILE.")
    args = parse_vllm_args(tokens[rest:], allow_positional_model=program[-1] == "serve")
    return Launch("serve", args, program, tuple(prefix), text=text, span=span)


def _program(tokens: list[str], i: int) -> tuple[tuple[str, ...] | None, int]:
    if i < len(tokens) and tokens[i].rsplit("/", 1)[-1] == "vllm" and i + 1 < len(tokens) and tokens[i + 1] == "serve":
        return (tokens[i], "serve"), i + 2
    if (i + 2 < len(tokens) and re.match(r"^(?:\S*/)?python[0-9.]*$", tokens[i]) and tokens[i + 1] == "-m"
            and tokens[i + 2].startswith("vllm.entrypoints")):
        return (tokens[i], "-m", tokens[i + 2]), i + 3
    return None, i


# docker run options that take a value (docker CLI reference); others are switches.
_DOCKER_VALUED = set("""-v --volume -e --env -p --publish --name --gpus --runtime --ipc --shm-size --network --net
--entrypoint -w --workdir --env-file --device --mount -u --user --restart -m --memory --memory-swap --cpus
--cpuset-cpus --cpuset-mems --ulimit -l --label --label-file --cap-add --cap-drop --security-opt --platform --pull
-h --hostname --add-host --log-driver --log-opt --group-add --tmpfs --stop-signal --stop-timeout --uts --pid
--cgroupns --cgroup-parent --cidfile --dns --dns-search --dns-option --expose --link --mac-address --ip --ip6
--oom-score-adj --storage-opt --sysctl --volumes-from --device-cgroup-rule --health-cmd --health-interval
--health-retries --health-timeout --health-start-period --userns --isolation --kernel-memory --pids-limit
--cpu-shares -c --blkio-weight --attach -a --network-alias --annotation""".split())
_DOCKER_SWITCH_LETTERS = set("ditP")


def _parse_docker(tokens: list[str], i: int, prefix: tuple[str, ...], text, span) -> Launch:
    program = [tokens[i]]
    i += 1
    if i < len(tokens) and tokens[i] == "container":
        program.append(tokens[i])
        i += 1
    if i >= len(tokens) or tokens[i] != "run":
        raise BadInput("launch: kvfit reads `docker run ...` commands")
    program.append("run")
    i += 1
    groups: list[tuple[str, ...]] = []
    while i < len(tokens) and tokens[i].startswith("-"):
        tok = tokens[i]
        if tok == "--":
            i += 1
            break
        if "=" in tok and tok.startswith("--"):
            groups.append((tok,))
            i += 1
        elif tok in _DOCKER_VALUED:
            if i + 1 >= len(tokens):
                raise BadInput(f"launch: docker option {tok} needs a value")
            groups.append((tok, tokens[i + 1]))
            i += 2
        elif not tok.startswith("--") and len(tok) > 2 and tok[:2] in _DOCKER_VALUED:
            groups.append((tok,))                  # -p8000:8000, -eKEY=VALUE
            i += 1
        elif not tok.startswith("--") and set(tok[1:]) <= _DOCKER_SWITCH_LETTERS:
            groups.append((tok,))                  # -d, -it, -dit
            i += 1
        elif tok.startswith("--") and tok not in ("--rm", "--detach", "--interactive", "--tty", "--privileged",
                                                  "--init", "--read-only", "--publish-all", "--oom-kill-disable",
                                                  "--no-healthcheck", "--quiet", "--sig-proxy") \
                and i + 1 < len(tokens) and not tokens[i + 1].startswith("-") and i + 2 < len(tokens):
            groups.append((tok, tokens[i + 1]))    # an option kvfit does not know: assume it takes a value
            i += 2
        else:
            groups.append((tok,))
            i += 1
    if i >= len(tokens):
        raise BadInput("launch: the docker command names no image", "Expected `docker run [options] vllm/vllm-openai[:tag] ...`.")
    image = tokens[i]
    i += 1
    inner, start = _program(tokens, i)
    if inner is None:
        inner, start = (), i
    args = parse_vllm_args(tokens[start:], allow_positional_model=not inner or inner[-1] == "serve")
    return Launch("docker", args, tuple(program), prefix, tuple(groups), image, tuple(inner), text=text, span=span)


def parse_shell(text: str) -> Launch:
    """A command line or a shell script holding one `vllm serve` / `docker run` command."""
    for pattern in (_DOCKER_START, _SERVE_START):
        span = _command_span(text, pattern)
        if span is not None:
            return parse_argv(split_shell(text[span[0]:span[1]]), text=text, span=span)
    tokens = split_shell(text)
    return parse_argv(tokens)


# --- YAML (vLLM --config files) ---------------------------------------------------------------------

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



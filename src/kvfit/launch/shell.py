"""Shell command lines: `vllm serve ...`, `python -m vllm.entrypoints...`, `docker run ... vllm/vllm-openai ...`
and the commands inside scripts (and Kubernetes manifests), read into a Launch and written back as shell
words: vLLM's argparse reading (kinds, aliases, abbreviations) and quoting that keeps $VAR and ${VAR} for
the shell. Pure."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from ..errors import BadInput
from ..units import parse_human_int
from .grammar import _FLOAT, _HUMAN_INT, _INT, _JSON, ASSIGN, KIND, canonical, is_flag, kind_of
from .model import POSITIONAL, Arg, Expr, Launch


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
        at = _command_start(line, start_re)
        if at is not None:
            start = pos + at
            end = pos + len(line)
            k = i
            while lines[k].rstrip("\r\n").endswith("\\") and k + 1 < len(lines):
                k += 1
                end += len(lines[k])
            body = text[start:end]
            return start, start + len(body.rstrip("\r\n"))
        pos += len(line)
    return None


_SEPARATOR = re.compile(r"(?:;|&&|\|\|)[ \t]*")


def _command_start(line: str, start_re: re.Pattern) -> int | None:
    """Where in a script line the command starts: at the line's start, or after a `;`, `&&` or `||` that ends
    the commands before it on the same line (`bash multi-node-serving.sh leader ...; vllm serve ...`, as in
    the LeaderWorkerSet examples)."""
    if start_re.match(line.strip()):
        return len(line) - len(line.lstrip())
    if line.lstrip().startswith("#"):
        return None
    for m in _SEPARATOR.finditer(line):
        if start_re.match(line[m.end():].strip()) and _unquoted(line[:m.start()]):
            return m.end()
    return None


def _unquoted(prefix: str) -> bool:
    """The text before a separator leaves no quote open (the separator is the shell's, not a quoted one)."""
    try:
        shlex.split(prefix)
    except ValueError:
        return False
    return True


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


def native(key: str, value: Any) -> Any:
    """A CLI / env string as the typed value vLLM's parser makes of it (for YAML and Python output)."""
    if isinstance(value, tuple):
        return [native(key, v) for v in value]
    if not isinstance(value, str):
        return value
    k = key.split(".", 1)[0]
    if KIND.get(k) in ("bool", "true") and "." not in key:
        low = value.strip().lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
    if key == "max-model-len" and value.strip().lower() in ("auto", "-1"):
        return -1
    if key in _INT or key in _HUMAN_INT:
        try:
            return parse_human_int(value, "--" + key) if key in _HUMAN_INT else int(value)
        except (BadInput, ValueError):
            return value
    if key in _FLOAT:
        try:
            return float(value)
        except ValueError:
            return value
    if (k in _JSON or "." in key) and value.strip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def cli_tokens(arg: Arg) -> list[str]:
    """The shell words of one argument (serve and docker forms)."""
    if arg.key == "":
        return [_cli_str(arg.value)]
    if arg.key in ("*", "**"):
        return []
    if arg.spelling == POSITIONAL:
        return [_cli_str(arg.value)]
    flag = arg.spelling if arg.spelling and arg.spelling.startswith("-") else "--" + arg.key
    if arg.key == "optimization-level" and arg.spelling == "-O":
        return [f"-O{arg.value}"]
    v = arg.value
    if v is True and not arg.joined:
        return [flag]
    if v is False:
        if KIND.get(arg.key) == "bool":
            return ["--no-" + arg.key]
        return []
    if v is None or isinstance(v, Expr):
        return []
    if isinstance(v, (list, tuple)):
        if arg.key in _JSON:
            return [flag, json.dumps(v)]
        return [flag, *[_cli_str(x) for x in v]]
    if arg.joined:
        return [f"{flag}={_cli_str(v)}"]
    return [flag, _cli_str(v)]


def _cli_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return json.dumps(v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


# --- rendering ------------------------------------------------------------------------------------------

_SAFE = re.compile(r"^[A-Za-z0-9_~@%+=:,./$-]+$")
_BRACED = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")     # ${VAR}: left for the shell too


def quote(tok: str) -> str:
    """Shell-quote a word, leaving ~ and $VAR as the shell would expand them in the original."""
    if tok and _SAFE.match(_BRACED.sub("$X", tok)) and not tok.startswith("=") and "$(" not in tok:
        return tok
    return shlex.quote(tok)


def _lines(head: list[str], groups: list[list[str]], width: int = 88) -> str:
    one = " ".join(quote(t) for t in head + [t for g in groups for t in g])
    if len(one) <= width or not groups:
        return one
    out = [" ".join(quote(t) for t in head)]
    for g in groups:
        out.append("    " + " ".join(quote(t) for t in g))
    return " \\\n".join(out)


def _arg_groups(args: tuple[Arg, ...]) -> list[list[str]]:
    groups: list[list[str]] = []
    for a in args:
        toks = cli_tokens(a)
        if toks:
            groups.append(toks)
    return groups


def _render_serve(launch: Launch, width: int = 88) -> str:
    program = list(launch.program or ("vllm", "serve"))
    groups = _arg_groups(launch.args)
    head = list(launch.prefix) + program
    # A positional model right after the program stays on the first line.
    if groups and launch.args and launch.args[0].spelling == POSITIONAL and cli_tokens(launch.args[0]):
        head += groups.pop(0)
    return _lines(head, groups, width)


def _render_docker(launch: Launch, width: int = 88) -> str:
    head = list(launch.prefix) + list(launch.program or ("docker", "run"))
    groups = [list(g) for g in launch.docker]
    groups.append([launch.image or "vllm/vllm-openai:latest", *launch.inner])
    groups += _arg_groups(launch.args)
    return _lines(head, groups, width)


def render_shell(launch: Launch, width: int = 88) -> str:
    """A serve or docker launch as a command line (no surrounding script)."""
    return _render_docker(launch, width) if launch.form == "docker" else _render_serve(launch, width)

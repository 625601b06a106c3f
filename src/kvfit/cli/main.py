"""The command line: argparse built from kvfit's one flag table (kvfit/flags.py), like vLLM's own CLI.
There is no second parser: every command, every option, every spelling comes from the table, and the
values are parsed by the table's parsers (the same ones that read a pasted launch or a manifest).

Exit codes: 0 fits (meets the goals), 1 does not, 2 bad input or a broken environment (never a traceback),
130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .. import __version__
from ..errors import BadInput, KvfitError
from ..flags import BY_DEST, FLAGS, Flag
from ..launch.grammar import FORMS
from .report import consoles, internal_error, report_error

_GROUPS = {"launch": "vLLM flags (as `vllm serve` takes them)", "input": "model, GPU and vLLM release",
           "goal": "goals (the verdict is about them when given)"}
PROGRAMS = ("vllm", "docker", "podman", "python", "python3", "exec", "sudo", "nohup", "env")


class Parser(argparse.ArgumentParser):
    def error(self, message: str):          # one message, exit 2, through kvfit's own error reporting
        raise BadInput(f"{self.prog}: {message}", f"See `{self.prog} --help`.")


def _add_flag(group, f: Flag) -> None:
    kw: dict[str, Any] = {"dest": f.dest, "help": f.help, "default": None}
    if f.switch:
        group.add_argument(*f.names, action="store_const", const=True, **kw)
        if f.negatable:
            group.add_argument("--no-" + f.long[2:], dest=f.dest, action="store_const", const=False, default=None,
                               help=argparse.SUPPRESS)
    else:
        group.add_argument(*f.names, metavar=f.metavar or ("{" + ",".join(f.choices) + "}" if f.choices else "VALUE"),
                           **kw)


def _add_table(p: argparse.ArgumentParser, command: str) -> None:
    for group, title in _GROUPS.items():
        g = p.add_argument_group(title)
        for f in FLAGS:
            if f.group == group and command in f.commands:
                _add_flag(g, f)


def build_parser() -> Parser:
    root = Parser(prog="kvfit", description="Preflight checker for vLLM's KV-cache capacity: will this launch fit, "
                                           "and which flags will.", allow_abbrev=False)
    root.add_argument("--version", action="store_true", help="kvfit's version and the vLLM releases it models.")
    sub = root.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    c = sub.add_parser("check", help="Will MODEL fit vLLM's KV cache on this GPU? The verdict and the flags that do.",
                       description="Will MODEL fit vLLM's KV cache on this GPU at this length? Prints the verdict "
                                   "and the launch to paste. A launch may follow `--` (vllm serve, docker run, "
                                   "python -m vllm...) or come from --launch/--config FILE.", allow_abbrev=False)
    c.add_argument("model", nargs="?", help="Hugging Face id (org/name), a local model directory or a config.json.")
    _add_table(c, "check")
    o = c.add_argument_group("output (the form only; never the numbers)")
    o.add_argument("--json", dest="as_json", action="store_true", help="The answer as JSON (schema kvfit.check/2).")
    o.add_argument("--format", dest="fmt", choices=(*FORMS, "json"),
                   help="Print only the recommended launch, in this form (the verdict goes to stderr).")
    o.add_argument("--svg", help="Also save the report as an SVG file.")
    o.add_argument("--details", "-v", dest="details", action="store_true",
                   help="The memory breakdown, capacity, alternatives and notes.")
    s = c.add_argument_group("launch input and CI gate")
    s.add_argument("--launch", dest="launch_file", metavar="FILE",
                   help="A launch in a file: shell script, docker command, vLLM YAML, Python, .env (- for stdin).")
    s.add_argument("--config", dest="config_file", metavar="FILE", help="A vLLM --config YAML file to check.")
    s.add_argument("--manifest", metavar="FILE", help="Check every entry of a kvfit.toml (README '## CI gate').")
    s.add_argument("--junit", metavar="FILE", help="With --manifest: write JUnit XML to FILE.")
    s.add_argument("--cluster", action="store_true",
                   help="With --gpu and --gpu-count N: the smallest layouts (TP/PP/DP/EP/DCP over nodes) of MODEL "
                        "that meet the goals, with each node's launch.")
    k = c.add_argument_group("smoke test (start a real vLLM engine after the check)")
    _smoke_options(k, prefix=True)

    m = sub.add_parser("smoke", help="Start a real vLLM engine with MODEL and compare it with kvfit's prediction.",
                       description="Start a real vLLM engine with MODEL and compare what it sizes with kvfit's "
                                   "prediction (one engine at a time per machine). Exit 0: started, generated, "
                                   "within tolerance; 1: failed, timed out or missed; 2: bad input or no vLLM.",
                       allow_abbrev=False)
    m.add_argument("model", help="Hugging Face id, a local model directory or a config.json path.")
    _add_table(m, "smoke")
    m.add_argument("--json", dest="as_json", action="store_true", help="The run record (calibration schema) as JSON.")
    _smoke_options(m, prefix=False)

    w = sub.add_parser("sweep", help="max_model_len and concurrency across utilizations and GPUs.",
                       description="max_model_len and max concurrency across gpu_memory_utilization values and "
                                   "across catalog GPUs (vLLM's numbers, no headroom; min util within kvfit's "
                                   "ceiling).", allow_abbrev=False)
    w.add_argument("model", nargs="?", help="Hugging Face id, local directory, or config.json path.")
    _add_table(w, "sweep")
    w.add_argument("--utilizations", help="Values to sweep: 0.3:0.95:0.05 (default) or 0.5,0.7,0.9.")
    w.add_argument("--json", dest="as_json", action="store_true", help="Machine-readable output.")
    w.add_argument("--svg", help="Also save the charts as an SVG file.")

    e = sub.add_parser("explain", help="Explain a vLLM startup log or memory error, with the flags that fix it.",
                       description="Explain a vLLM startup log or memory error in plain words, with the flags that "
                                   "fix it. Exit 0: a diagnosis was made; 1: nothing kvfit recognises; 2: the input "
                                   "cannot be read.", allow_abbrev=False)
    e.add_argument("logfile", nargs="?", metavar="LOGFILE|-", help="A vLLM log or traceback; - or nothing: stdin.")
    e.add_argument("--offline", action="store_true", help="Never use the network when re-checking the model.")
    e.add_argument("--gpu", help="The GPU the log ran on, when the log does not show its total.")
    e.add_argument("--gpu-memory", dest="gpu_memory", help="Its total as CUDA reports it (79.25GiB).")
    e.add_argument("--json", dest="as_json", action="store_true", help="Machine-readable output.")

    x = sub.add_parser("schema", help="Print the JSON Schema of a command's --json output.",
                       description="Print the JSON Schema (draft 2020-12) of what COMMAND prints with --json: "
                                   "check (with or without a GPU), sweep, explain, smoke, manifest (check "
                                   "--manifest), models, gpus, or error (any command's --json error). Without "
                                   "COMMAND: all of them, by command.", allow_abbrev=False)
    x.add_argument("schema_name", nargs="?", metavar="COMMAND", help="check, sweep, explain, smoke, manifest, models, "
                   "gpus or error.")
    x.add_argument("--json", dest="as_json", action="store_true", help="Accepted for symmetry: the schema is JSON.")

    for name, helptext in (("models", "List the models bundled with kvfit (they work offline)."),
                           ("gpus", "List the GPUs NVML sees here and the GPUs in kvfit's catalog.")):
        x = sub.add_parser(name, help=helptext, description=helptext, allow_abbrev=False)
        x.add_argument("--json", dest="as_json", action="store_true", help="Machine-readable output.")
    return root


def _smoke_options(g, prefix: bool) -> None:
    if prefix:
        g.add_argument("--smoke", action="store_true", help="Then start a real vLLM engine and compare.")
    g.add_argument("--dummy-weights", dest="dummy_weights", action="store_true",
                   help="Random weights (load_format=dummy): only config.json is needed.")
    g.add_argument("--record", metavar="FILE", help="Append the run as one JSON line to FILE.")
    g.add_argument("--timeout", type=float, default=900.0, help="Seconds the engine may take (after the lock).")
    g.add_argument("--tolerance", type=float, default=5.0,
                   help="Allowed difference in percent when vLLM profiles the KV budget (explicit budgets: exact).")
    g.add_argument("--as-given", dest="as_given", action="store_true",
                   help="Start the flags given even when kvfit predicts they fail.")
    g.add_argument("--show-log", dest="show_log", action="store_true", help="Stream the engine's log to stderr.")


def split_launch(argv: list[str]) -> tuple[list[str], list[str]]:
    """(kvfit's own arguments, the launch's words): after `--`, or from the first word that starts a
    launch (`vllm serve ...`, `docker run ...`, `CUDA_VISIBLE_DEVICES=0 vllm ...`)."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    valued = {n for f in FLAGS if not f.switch for n in f.names} | {
        "--format", "--svg", "--launch", "--config", "--manifest", "--junit", "--record", "--timeout",
        "--tolerance", "--utilizations"}
    i, positional = 0, 0
    while i < len(argv):
        tok = argv[i]
        if tok.startswith("-"):
            i += 2 if (tok in valued and "=" not in tok) else 1
            continue
        base = tok.rsplit("/", 1)[-1]
        if positional >= 1 and (base in PROGRAMS or base.startswith("python") or
                                ("=" in tok and tok.split("=", 1)[0].isidentifier() and tok.split("=")[0].isupper())):
            return argv[:i], argv[i:]
        if positional == 0 and (base in ("vllm", "docker", "podman") or
                                ("=" in tok and tok.split("=", 1)[0].isupper())):
            return argv[:i], argv[i:]
        positional += 1
        i += 1
    return argv, []


def version_text() -> str:
    from ..memory.profiles import CURRENT_VERSION, known_releases

    rel = known_releases()
    return (f"kvfit {__version__}\nvLLM rules: {rel[0]} to {rel[-1]} (V0 engine up to 0.10, V1 from 0.8); "
            f"default: the installed vLLM, else {CURRENT_VERSION}")


def wants_json(argv: list[str]) -> bool:
    """Did the command line ask for JSON (--json, --format json)? Then an error is a JSON object on stdout."""
    own = argv[:argv.index("--")] if "--" in argv else argv
    return "--json" in own or "--format=json" in own or any(
        a == "--format" and b == "json" for a, b in zip(own, own[1:]))


def error_dict(e: BaseException, exit_code: int) -> dict:
    """The error object a program reads from stdout with --json (schema kvfit.error/1, `kvfit schema error`):
    kind (the KvfitError subclass, e.g. ModelNotFound, BadFlag; InternalError for a kvfit bug), message, exit
    code, and hint and flag when known. Tokens are redacted as in the message on stderr."""
    from ..errors import redact

    if isinstance(e, KvfitError):
        d: dict[str, Any] = {"kind": type(e).__name__, "message": redact(e.message), "exit_code": exit_code}
        if e.hint:
            d["hint"] = redact(e.hint)
        if getattr(e, "flag", None):
            d["flag"] = e.flag
    else:
        d = {"kind": "InternalError", "message": f"internal error ({e.__class__.__name__}: {redact(str(e))[:300]}); "
             "this is a kvfit bug", "exit_code": exit_code,
             "hint": "Rerun with KVFIT_DEBUG=1 for details and report it."}
    return {"error": d}


def print_error_json(e: BaseException, exit_code: int) -> None:
    import json

    sys.stdout.write(json.dumps(error_dict(e, exit_code), indent=2, ensure_ascii=False) + "\n")


def run(argv: list[str]) -> int:
    out, err = consoles()
    if argv[:1] == ["check"] or argv[:1] == ["sweep"]:
        own, words = split_launch(argv[1:])
        argv = argv[:1] + own
    else:
        words = []
    ns = build_parser().parse_args(argv)
    if ns.version:
        print(version_text())
        return 0
    if ns.command is None:
        build_parser().print_help()
        return 2
    from . import commands

    return getattr(commands, ns.command)(ns, words, out, err)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    out, err = consoles()
    as_json = wants_json(args)
    try:
        code = run(args)
    except KvfitError as e:
        report_error(err, e)
        code = e.exit_code
        if as_json:                 # a program asked for JSON: the error is JSON on stdout too (exit 2)
            print_error_json(e, code)
    except KeyboardInterrupt:
        print("kvfit: interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:
        # `kvfit check ... | head -1`: the reader went away; not a verdict (exit 1 means "does not fit").
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        code = 141
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0
    except Exception as e:  # noqa: BLE001 - the contract: a message and exit 2, never a traceback
        code = internal_error(e)
        if as_json:
            print_error_json(e, code)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        code = 141 if code in (0, 1) else code
    sys.exit(code)


if __name__ == "__main__":
    main()

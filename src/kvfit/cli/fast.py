"""The `kvfit` entry point: `kvfit check` answered without loading typer.

typer (with the pydantic it uses to coerce every option) costs more start-up time than the whole
check, and kvfit runs on every commit in CI (README "## Speed": <= 0.3 s). So a `check` command
line made only of the options below, well-formed, is parsed here with plain string work and handed
to app_check.run, exactly as cli.check would. Anything else (--help, another command, an option
this table does not know, a value that does not parse) goes to the typer app in cli.py, which
stays the one place that words usage errors. tests/test_imports.py keeps this table equal to the
typer command's options, and tests/fuzz checks both paths answer alike.
"""

from __future__ import annotations

import os
import sys

from ..errors import redact

# dest -> (option names, kind, default). Kinds: "str", "int", "flag". Mirrors cli.check.
CHECK_OPTIONS: dict[str, tuple[tuple[str, ...], str, object]] = {
    "max_model_len": (("--max-model-len",), "str", None),
    "gpu_memory_utilization": (("--gpu-memory-utilization",), "str", None),
    "tensor_parallel_size": (("--tensor-parallel-size", "-tp"), "int", 1),
    "pipeline_parallel_size": (("--pipeline-parallel-size", "-pp"), "int", 1),
    "dtype": (("--dtype",), "str", "auto"),
    "kv_cache_dtype": (("--kv-cache-dtype",), "str", "auto"),
    "block_size": (("--block-size",), "int", None),
    "max_num_seqs": (("--max-num-seqs",), "int", None),
    "max_num_batched_tokens": (("--max-num-batched-tokens",), "str", None),
    "enforce_eager": (("--enforce-eager",), "flag", False),
    "kv_cache_memory_bytes": (("--kv-cache-memory-bytes",), "str", None),
    "gpu": (("--gpu",), "str", None),
    "gpu_memory": (("--gpu-memory",), "str", None),
    "vllm_version": (("--vllm-version",), "str", None),
    "entrypoint": (("--entrypoint",), "str", "serve"),
    "device": (("--device",), "str", "cuda"),
    "revision": (("--revision",), "str", None),
    "offline": (("--offline",), "flag", False),
    "as_json": (("--json",), "flag", False),
    "enable_lora": (("--enable-lora",), "flag", False),
    "max_loras": (("--max-loras",), "int", 1),
    "max_lora_rank": (("--max-lora-rank",), "int", 16),
    "speculative_config": (("--speculative-config",), "str", None),
    "enable_prefix_caching": (("--enable-prefix-caching",), "flag", False),
    "no_enable_prefix_caching": (("--no-enable-prefix-caching",), "flag", False),
    "mamba_cache_dtype": (("--mamba-cache-dtype",), "str", "auto"),
    "mamba_ssm_cache_dtype": (("--mamba-ssm-cache-dtype",), "str", "auto"),
    "disable_hybrid_kv_cache_manager": (("--disable-hybrid-kv-cache-manager",), "flag", False),
    "disable_sliding_window": (("--disable-sliding-window",), "flag", False),
    "cpu_isa": (("--cpu-isa",), "str", None),
}
_BY_NAME = {name: dest for dest, (names, _, _) in CHECK_OPTIONS.items() for name in names}


def _int(text: str) -> int | None:
    body = text[1:] if text.startswith("-") else text
    return int(text) if body.isascii() and body.isdigit() else None


def parse_check(argv: list[str]) -> dict | None:
    """argv after `check` -> the keyword arguments of cli.check, or None to let typer parse it."""
    values = {dest: default for dest, (_, _, default) in CHECK_OPTIONS.items()}
    model = None
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok == "--":
            return None                         # a pasted launch follows: the planner's
        if not tok.startswith("-") or tok == "-":
            if model is not None:
                return None                     # an extra argument: typer words the error
            model = tok
            continue
        name, eq, explicit = tok.partition("=")
        dest = _BY_NAME.get(name)
        if dest is None:
            return None                         # --help, an unknown or a new option
        kind = CHECK_OPTIONS[dest][1]
        if kind == "flag":
            if eq:
                return None
            values[dest] = True
            continue
        if eq:
            value = explicit
        elif i < len(argv):
            value = argv[i]
            i += 1
        else:
            return None                         # missing value
        if kind == "int":
            value = _int(value)
            if value is None:
                return None
        values[dest] = value
    if model is None:
        return None
    values["model"] = model
    return values


class LazyConsole:
    """A rich Console (as cli.py makes them) created on first use. `check --json` that succeeds prints
    plain JSON and never imports rich: print_json(..., highlight=False) writes exactly what rich would
    (json.dumps with indent 2, ensure_ascii off, no wrapping)."""

    def __init__(self, **kw):
        self._kw, self._console = kw, None

    def _real(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._kw)
        return self._console

    def print_json(self, json_text: str | None = None, *, highlight: bool = True, **kw):
        if self._console is None and not kw and json_text is not None and not self._kw.get("stderr") \
                and (not highlight or not (sys.stdout.isatty() or os.environ.get("FORCE_COLOR"))):
            import json

            sys.stdout.write(json.dumps(json.loads(json_text), indent=2, ensure_ascii=False) + "\n")
            return
        self._real().print_json(json_text, highlight=highlight, **kw)

    def __getattr__(self, name):
        return getattr(self._real(), name)


def consoles():
    """stdout and stderr consoles, as cli.py makes them (made on first use)."""
    return LazyConsole(highlight=False), LazyConsole(stderr=True, highlight=False)



def report_error(err, e) -> None:
    """A KvfitError as the user sees it: the message, then what to do. Never read as rich markup."""
    from rich.markup import escape

    err.print(f"[bold red]kvfit:[/] {escape(redact(e.message))}")
    if e.hint:
        err.print(f"  {escape(redact(e.hint))}")


def internal_error(e: BaseException) -> int:
    """A bug in kvfit: one line saying so (the traceback only with KVFIT_DEBUG=1), exit 2."""
    if os.environ.get("KVFIT_DEBUG"):
        import traceback

        traceback.print_exception(e)
    print(f"kvfit: internal error ({e.__class__.__name__}: {redact(str(e))[:300]}). This is a kvfit bug; "
          "rerun with KVFIT_DEBUG=1 for details and report it.", file=sys.stderr)
    return 2


def _fast_check(argv: list[str]) -> int | None:
    """Run `kvfit check` when the fast parser can read argv; None otherwise."""
    kw = parse_check(argv)
    if kw is None:
        return None
    from ..app import check as app_check
    from ..errors import BadInput, KvfitError

    code = app_check.run.__code__
    kwonly = code.co_varnames[code.co_argcount:code.co_argcount + code.co_kwonlyargcount]
    if set(kwonly) - set(app_check.run.__kwdefaults__ or {}) - set(kw) - {"gpu_memory_utilization", "out", "err"}:
        return None                             # run() grew an argument this table does not know yet
    out, err = consoles()
    try:
        util = kw.pop("gpu_memory_utilization")
        if util is not None:
            try:
                util = float(util)
            except ValueError:
                raise BadInput(f"--gpu-memory-utilization must be a number in (0, 1], got {util!r}") from None
        return app_check.run(**kw, gpu_memory_utilization=util, out=out, err=err)
    except KvfitError as e:
        report_error(err, e)
        return e.exit_code


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["check"]:
        try:
            code = _fast_check(argv[1:])
        except KeyboardInterrupt:
            print("kvfit: interrupted", file=sys.stderr)
            sys.exit(130)
        except Exception as e:  # noqa: BLE001 - the contract: a message and exit 2, never a traceback
            sys.exit(internal_error(e))
        if code is not None:
            sys.exit(code)
    from .app import main as typer_main

    typer_main()


if __name__ == "__main__":
    main()

"""Run the kvfit command line in this process, as the console script does (kvfit.cli.main.run, with main's
error reporting for kvfit's own errors: the message on stderr and, with --json, the error object on stdout),
capturing stdout and stderr. Any other exception propagates: a
crash fails the test with its traceback instead of being turned into "internal error"."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from dataclasses import dataclass


@dataclass
class Invoked:
    rc: int
    out: str
    err: str
    exception: BaseException | None = None

    @property
    def stdout(self) -> str:
        return self.out

    @property
    def stderr(self) -> str:
        return self.err

    @property
    def exit_code(self) -> int:
        return self.rc

    @property
    def json(self) -> dict:
        return json.loads(self.out)

    def __repr__(self) -> str:
        return f"<rc={self.rc}\nstdout:\n{self.out[-4000:]}\nstderr:\n{self.err[-3000:]}>"


class _Stdin(io.StringIO):
    def isatty(self) -> bool:
        return False


def invoke(args, input: str | None = None) -> Invoked:
    from kvfit.cli import main as M
    from kvfit.cli.report import consoles, report_error
    from kvfit.errors import KvfitError

    out, err = io.StringIO(), io.StringIO()
    old_in = sys.stdin
    if input is not None:
        sys.stdin = _Stdin(input)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = M.run([str(a) for a in args])
            except KvfitError as e:
                report_error(consoles()[1], e)
                code = e.exit_code
                if M.wants_json([str(a) for a in args]):     # as main(): with --json the error is JSON on stdout
                    M.print_error_json(e, code)
            except SystemExit as e:             # argparse --help
                code = e.code if isinstance(e.code, int) else 0
    finally:
        sys.stdin = old_in
    from kvfit_schema import check_output

    check_output(args, out.getvalue())          # any JSON it printed validates against the shipped schema
    return Invoked(code, out.getvalue(), err.getvalue())


def isolate(monkeypatch, tmp_path, columns: int = 200, probe: bool = True):
    """The environment every in-process run gets: an empty HF cache, offline, kvfit's cache under tmp_path,
    a fixed terminal width, none of the variables that change kvfit's answer, and (probe) NVML seeing no
    GPU. Returns the HF cache directory."""
    cache = tmp_path / "hf-cache"
    cache.mkdir(exist_ok=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("COLUMNS", str(columns))
    for var in ("CUDA_VISIBLE_DEVICES", "VLLM_CPU_KVCACHE_SPACE", "GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY",
                "KVFIT_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    if probe:
        from kvfit.gpu import nvml

        monkeypatch.setattr(nvml, "probe", lambda: nvml.ProbeResult((), "test: no GPU"))
    return cache

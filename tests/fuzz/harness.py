"""Running kvfit in-process for the fuzz suite: a hard time limit, captured output, a network guard,
and the properties every run must keep (exit 0/1/2, a message, never a traceback)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEEDS = HERE.parent / "data" / "fuzz_seeds"
HARD_LIMIT_S = 20.0        # one run longer than this is a hang


# Generated inputs run this session, by kind ("config": fed to the config reader, "cli": a command
# line run): tests/fuzz/conftest.py reports them and holds the suite to its 10,000 floor.
COUNTS: dict[str, int] = {"config": 0, "cli": 0}


def count(kind: str) -> None:
    COUNTS[kind] += 1


class Hang(BaseException):
    """Raised by the alarm: BaseException, so kvfit's `except Exception` cannot swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float, what: str):
    """Interrupt the block after `seconds` (main thread only, SIGALRM)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum, frame):
        raise Hang(f"no answer after {seconds} s: {what}")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except Hang as h:           # reported as a plain failure, so hypothesis shows the input
        raise AssertionError(str(h)) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class NetGuard:
    """Records every attempt to open a network connection or resolve a name, and refuses it."""

    calls: list = field(default_factory=list)

    def install(self, mp) -> "NetGuard":
        def connect(sock, address, *a, **k):
            self.calls.append(("connect", address))
            raise ConnectionRefusedError("network disabled by the kvfit test suite")

        def getaddrinfo(host, *a, **k):
            self.calls.append(("getaddrinfo", host))
            raise socket.gaierror("network disabled by the kvfit test suite")

        def create_connection(address, *a, **k):
            self.calls.append(("create_connection", address))
            raise ConnectionRefusedError("network disabled by the kvfit test suite")

        mp.setattr(socket.socket, "connect", connect)
        mp.setattr(socket.socket, "connect_ex", connect)
        mp.setattr(socket, "getaddrinfo", getaddrinfo)
        mp.setattr(socket, "create_connection", create_connection)
        return self


@dataclass
class Outcome:
    argv: list
    code: object
    out: str
    err: str
    via: str

    def __str__(self) -> str:
        return (f"kvfit {' '.join(map(repr, self.argv))}  [{self.via}]\n-> exit {self.code!r}\n"
                f"--- stdout ---\n{self.out[-3000:]}\n--- stderr ---\n{self.err[-6000:]}")


def run_entry(argv: list[str], limit: float = HARD_LIMIT_S) -> Outcome:
    """`kvfit ARGV` through the console entry point (kvfit.cli.main.main), in process."""
    from kvfit.cli import main as entry

    out, err = io.StringIO(), io.StringIO()
    old_argv = sys.argv
    sys.argv = ["kvfit", *argv]
    code: object = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), time_limit(limit, repr(argv)):
            try:
                entry.main()
            except SystemExit as e:
                code = e.code
    finally:
        sys.argv = old_argv
    from kvfit_schema import check_output

    check_output(argv, out.getvalue())                # any JSON it printed validates against the shipped schema
    return Outcome(argv, 0 if code is None else code, out.getvalue(), err.getvalue(), "entry")


def run_direct(argv: list[str], limit: float = HARD_LIMIT_S) -> Outcome:
    """`kvfit ARGV` through kvfit.cli.main.run with only kvfit's own errors reported: any other exception is
    re-raised (a crash), un-wrapped by the entry point's "internal error" guard."""
    from kvfit_harness import invoke

    with time_limit(limit, repr(argv)):
        r = invoke(argv)
    return Outcome(argv, r.rc, r.out, r.err, "direct")


def assert_contract(o: Outcome, *, json_out: bool = False) -> None:
    """Exit 0, 1 or 2; a message; never a traceback or an internal error."""
    text = o.out + o.err
    assert o.code in (0, 1, 2), o
    assert "Traceback" not in text, o
    assert "internal error" not in o.err, o
    if o.code == 2:
        assert o.err.strip() or o.out.strip(), o        # usage errors and kvfit errors both say why
    else:
        assert o.out.strip(), o
        if json_out:
            json.loads(o.out)


def seed_texts() -> dict[str, str]:
    return {p.name[:-5]: p.read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.json"))
            if not p.name.endswith(".hf_quant_config.json")}


def seed_quant_configs() -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(SEEDS.glob("*.hf_quant_config.json"))]


@contextlib.contextmanager
def hermetic(tmp: Path):
    """Process-wide environment for in-process runs: offline, an empty HF cache, no CUDA/VLLM vars,
    no network (recorded), the traceback shown if kvfit ever hits its internal-error handler."""
    import pytest

    with pytest.MonkeyPatch.context() as mp:
        cache = tmp / "hf-cache"
        cache.mkdir(parents=True, exist_ok=True)
        for k in list(os.environ):
            if k.startswith(("HF_", "HUGGINGFACE_", "CUDA_", "VLLM_", "KVFIT_")):
                mp.delenv(k)
        mp.setenv("HF_HUB_CACHE", str(cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("XDG_CACHE_HOME", str(tmp / "xdg-cache"))
        mp.setenv("KVFIT_DEBUG", "1")
        mp.setenv("COLUMNS", "200")
        guard = NetGuard().install(mp)
        yield mp, guard

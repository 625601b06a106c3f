"""What a person sees in a terminal (issue 12): `kvfit` run in a real pseudo-terminal of 60, 80 and 120
columns, its output captured as the terminal received it. The command to paste must be plain lines outside
any box, no line wider than the terminal, continued only with ` \\`, so that a selection of those lines,
read by the shell (shlex), is one command; fed back to `kvfit check`, it fits. The plain report stays within
25 non-empty lines; the table without a GPU stays within 80 columns.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import shlex
import struct
import subprocess
import sys
import termios
import time

import pytest

from kvfit_harness import invoke

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
BOX = set("│┃┆┊║╭╮╰╯┌┐└┘━─")


def run_in_pty(args: list[str], columns: int, rows: int = 60, timeout: float = 60) -> str:
    """`python -m kvfit ARGS` on a pseudo-terminal of `columns` x `rows`; what the terminal received."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR")}
    env.update(TERM="xterm-256color", HF_HUB_OFFLINE="1")
    p = subprocess.Popen([sys.executable, "-m", "kvfit", *args], stdin=slave, stdout=slave, stderr=slave,
                         env=env, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:                      # EIO: the other side closed
            break
        if not data:
            break
        chunks.append(data)
        if time.monotonic() > deadline:
            p.kill()
            break
    p.wait(timeout=10)
    os.close(master)
    return ANSI.sub("", b"".join(chunks).decode("utf-8", "replace")).replace("\r\n", "\n")


def command_after(text: str, marker: str = "vllm serve") -> tuple[list[str], list[str]]:
    """The command that starts at the first line beginning with `marker`, with its ` \\` continuations: (its
    lines as shown, its words as the shell reads the selection)."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith(marker))
    block = [lines[start]]
    while block[-1].rstrip().endswith("\\"):
        block.append(lines[start + len(block)])
    return block, shlex.split("\n".join(block).replace("\\\n", " "))


CASES = [
    # (kvfit check arguments, what the launch is checked on when fed back)
    (["canopylabs/orpheus-3b-0.1-ft", "--gpu", "RTX 3090", "--max-model-len", "131072",
      "--gpu-memory-utilization", "0.9"], ["--gpu", "RTX 3090"]),                       # the case
    (["meta-llama/Llama-3.1-8B-Instruct", "--gpu", "L4", "--enable-lora", "--max-loras", "4",
      "--speculative-config", '{"method": "ngram", "num_speculative_tokens": 4}'], ["--gpu", "L4"]),
    (["Qwen/Qwen3-8B", "--gpu", "RTX 4090", "--context", "32768", "--concurrency", "4"],
     ["--gpu", "RTX 4090", "--context", "32768", "--concurrency", "4"]),
    (["meta-llama/Llama-3.1-70B-Instruct", "--gpu", "A100 80GB", "-tp", "2", "--max-model-len", "65536"],
     ["--gpu", "A100 80GB"]),
]


@pytest.mark.parametrize("columns", [60, 80, 120])
@pytest.mark.parametrize("args,recheck", CASES, ids=["orpheus", "lora-spec", "goals", "tp2"])
def test_the_command_pastes_as_one_working_command(args, recheck, columns):
    out = run_in_pty(["check", *args], columns)
    lines, words = command_after(out)
    assert not any(ch in BOX for ln in lines for ch in ln), out            # outside any box
    for ln in lines:                                                       # never wider than the terminal ...
        flag = ln.strip().rstrip("\\").strip()
        assert len(ln) <= columns or len(flag) + 6 > columns, (columns, ln)   # ... unless one flag is wider
    for ln in lines[:-1]:
        assert ln.endswith(" \\"), ln                                      # continued only with ` \`
    assert words[:2] == ["vllm", "serve"]
    back = invoke(["check", *recheck, "--", *words])
    assert back.rc == 0, (columns, words, back)
    # the same command as --format serve prints it (one line) and the JSON describes it
    assert shlex.split(invoke(["check", *args, "--format", "serve"]).out) == words


@pytest.mark.parametrize("args", [a for a, _ in CASES])
def test_the_plain_report_is_at_most_25_lines(args):
    out = run_in_pty(["check", *args], 120)
    assert len([ln for ln in out.splitlines() if ln.strip()]) <= 25, out


@pytest.mark.parametrize("columns", [60, 80])
@pytest.mark.parametrize("log", ["v0_error_util_fix.log", "v1_011_error_util.log"])
def test_explain_prints_the_corrected_launch_pasteable(columns, log):
    from pathlib import Path

    out = run_in_pty(["explain", str(Path(__file__).parent / "data" / "logs" / log), "--offline"], columns)
    lines, words = command_after(out[out.index("Corrected launch:"):])
    assert not any(ch in BOX for ln in lines for ch in ln), out
    assert all(len(ln) <= columns for ln in lines), out
    for ln in lines[:-1]:
        assert ln.endswith(" \\"), ln
    assert words[:2] == ["vllm", "serve"] and "--max-model-len" in words, words


def test_the_table_without_a_gpu_reads_at_80_columns(monkeypatch):
    out = run_in_pty(["check", "canopylabs/orpheus-3b-0.1-ft"], 80)
    body = [ln for ln in out.splitlines() if ln.strip()]
    assert all(len(ln) <= 80 for ln in body), out
    names = [ln.split()[0] + " " + ln.split()[1] for ln in body if ln.split()[:1] and ln.split()[0] in
             ("RTX", "A10", "L4", "L40S", "A100-SXM4-40GB", "A100-SXM4-80GB", "H100", "H200")]
    assert any("A100-SXM4-40GB" in n for n in names) and any("A100-SXM4-80GB" in n for n in names), out

"""How `kvfit smoke` shows an engine death (kvfit.engine.smoke.Death) in the terminal: rich markup lines."""

from __future__ import annotations

from rich.markup import escape

PHASE_WORDS = {"import": "while importing vLLM", "start-up": "during start-up", "load": "while loading the model",
               "profile": "while profiling memory", "KV sizing": "while sizing the KV cache",
               "warm-up": "during warm-up, after sizing the KV cache", "generate": "while generating"}


def death_lines(death, *, kv_measured: bool) -> list[str]:
    """The death in a few lines: phase, signal and what it usually means, where, the last log lines, the log."""
    how = f"killed by [bold]{death.signal}[/]" if death.signal else "gone (the signal was not reported)"
    who = f"{escape(death.process)} " if death.process and death.process != "runner" else ""
    lines = [f"[red]✘ FAILED[/] the engine died {PHASE_WORDS.get(death.phase or '', 'during start-up')}: "
             f"{who}{how}" + (f" (exit code {death.exit_code})" if death.exit_code is not None else "")]
    lines.append(f"  {escape(death.meaning)}")
    if death.frame:
        lines.append(f"  where: {escape(death.frame)}")
    if death.error:
        lines.append(f"  vLLM said: {escape(death.error[:300])}")
    if kv_measured:
        lines.append("  the KV numbers above were measured before the death (compared as usual)")
    if death.last_lines:
        lines.append("  last engine log lines:")
        lines += [f"  [dim]| {escape(ln[:240])}[/]" for ln in death.last_lines]
    if death.log_path:
        lines.append(f"  full engine log: {escape(death.log_path)}")
    return lines

"""How the command line prints: consoles made on first use (a successful `check --json` never imports rich),
and one wording for every error: the message, what to do, tokens redacted, never read as rich markup."""

from __future__ import annotations

import os
import sys

from ..errors import redact


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

"""One error family for everything the user can fix, and redact() for every message kvfit shows.

Each error carries the message the user sees and the exit code: 2 for bad input or a broken
environment (the documented contract), never a traceback.
"""

from __future__ import annotations

import os


class KvfitError(Exception):
    """A problem the user can act on. `hint` says what to do."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"


class BadInput(KvfitError):
    """A flag value, size or manifest entry that cannot be right."""

    flag: str | None = None          # the flag (= manifest field) it is about, when one is


class ModelNotFound(KvfitError):
    """No source had the model."""


class ConfigError(KvfitError):
    """config.json is missing, malformed, or lacks what the KV arithmetic needs."""


class HubError(KvfitError):
    """The Hugging Face Hub could not be reached, or refused (gated, private)."""


class GpuError(KvfitError):
    """NVML or the GPU catalog could not answer."""


def redact(text: str) -> str:
    """Remove Hugging Face tokens from text shown to the user (they go only to the Hub)."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        token = os.environ.get(var, "").strip()
        if len(token) >= 4:
            text = text.replace(token, "***")
    return text


class BadFlag(BadInput):
    """A value for one flag (or manifest field: the same name) that cannot be right. `flag` is its dest."""

    def __init__(self, message: str, hint: str | None = None, *, flag: str | None = None):
        super().__init__(message, hint)
        self.flag = flag


class NotModelled(BadInput):
    """A vLLM flag or value that changes GPU memory in a way kvfit does not model: refused, never dropped."""

    def __init__(self, message: str, hint: str | None = None, *, flag: str | None = None):
        super().__init__(message, hint)
        self.flag = flag


class GatedModel(HubError):
    """The Hub refused: the repository is gated or private."""


class HubUnreachable(HubError):
    """The Hub could not be reached (network, timeout)."""


class LaunchError(BadInput):
    """A pasted or named launch that cannot be read."""

"""kvfit: a preflight checker for vLLM's KV-cache capacity."""

__version__ = "0.2.0"

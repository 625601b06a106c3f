"""Import-only stand-in (see torchvision/__init__.py)."""

from torchvision import Missing


def __getattr__(name):
    return Missing(name)

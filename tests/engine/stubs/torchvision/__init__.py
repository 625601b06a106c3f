"""Import-only stand-in for torchvision, used by tests/engine/weights_runner.py when torchvision is not
installed: transformers' image utilities (imported by vLLM's multimodal model files) import names from
torchvision at module level. The runner builds models on the meta device and never processes an image:
every name resolves to a placeholder that fails if it is ever called."""

__version__ = "0.0.0+kvfit-stub"


class Missing:
    def __init__(self, name: str):
        self.name = name

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"torchvision stub: {self.name} is not available")

    def __getattr__(self, attr):
        return Missing(f"{self.name}.{attr}")


def __getattr__(name):
    return Missing(name)

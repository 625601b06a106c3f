"""The user's vLLM launch as data: its arguments in order, spelled as written (see kvfit.launch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .grammar import ASSIGN

@dataclass(frozen=True)
class Expr:
    """A Python argument that is not a literal (a variable, a call): kept as its source text."""

    src: str


@dataclass(frozen=True)
class Arg:
    """One argument. key: vLLM's flag name without dashes ('max-model-len'); '' for an extra positional.

    value: True / False for flags; str (CLI and env forms, as written); int / float / str / list / dict /
    None / Expr (YAML and Python forms, as typed); tuple[str, ...] for multi-valued CLI flags.
    """

    key: str
    value: Any
    spelling: str | None = field(default=None, compare=False)   # as written: '--max_model_len', '-tp', 'MAX_MODEL_LEN'
    joined: bool = field(default=False, compare=False)           # '--flag=value'


POSITIONAL = "#"     # spelling of a positional model argument


@dataclass(frozen=True)
class Launch:
    form: str
    args: tuple[Arg, ...]
    program: tuple[str, ...] = ()       # ('vllm', 'serve') | ('python', '-m', 'vllm....api_server') | ('docker', 'run') | ('LLM',)
    prefix: tuple[str, ...] = ()        # shell: env assignments / exec before the program; python: the assigned name
    docker: tuple[tuple[str, ...], ...] = ()   # docker options, one group per option
    image: str | None = None
    inner: tuple[str, ...] = ()         # docker: the command after the image ('vllm', 'serve')
    env: tuple[tuple[str, str], ...] = ()      # env form: variables that are not vLLM arguments
    text: str | None = field(default=None, compare=False)       # the file or script it came from
    span: tuple[int, int] | None = field(default=None, compare=False)   # where in `text` the launch is
    pristine: tuple | None = field(default=None, compare=False)         # args as read from `text`
    gpus: int | None = None             # k8s / helm: the GPUs the pod asks for (`nvidia.com/gpu`, `requestGPU`)

    def __post_init__(self) -> None:
        if self.text is not None and self.pristine is None:
            object.__setattr__(self, "pristine", self.args)

    @property
    def unchanged(self) -> bool:
        """Read from a text and not changed since: rendering it gives that text back."""
        return self.text is not None and self.pristine == self.args

    # --- reading ---
    @property
    def model(self) -> str | None:
        v = self.get("model")
        return v if isinstance(v, str) else None

    def get(self, key: str, default: Any = None) -> Any:
        """The value vLLM ends up with: the last occurrence wins (argparse semantics)."""
        for a in reversed(self.args):
            if a.key == key:
                return a.value
        return default

    def has(self, key: str) -> bool:
        return any(a.key == key for a in self.args)

    @property
    def gpu_count(self) -> int | None:
        """How many GPUs the launch can see: a pod's `nvidia.com/gpu` limit (k8s) or `requestGPU` (helm), else
        the devices CUDA_VISIBLE_DEVICES lists; None when the launch does not say."""
        if self.gpus is not None:
            return self.gpus
        ids = [x for x in self.environment.get("CUDA_VISIBLE_DEVICES", "").split(",") if x.strip()]
        return len(ids) or None

    @property
    def environment(self) -> dict[str, str]:
        """Environment variables the launch sets (shell prefix, docker -e, env form)."""
        out: dict[str, str] = {}
        for tok in self.prefix:
            if ASSIGN.match(tok):
                k, _, v = tok.partition("=")
                out[k] = v
        for group in self.docker:
            if group[0] in ("-e", "--env") and len(group) == 2 and "=" in group[1]:
                k, _, v = group[1].partition("=")
                out[k] = v
            elif group[0].startswith(("--env=", "-e=")) and "=" in group[0].split("=", 1)[1]:
                k, _, v = group[0].split("=", 1)[1].partition("=")
                out[k] = v
        out.update(dict(self.env))
        return out



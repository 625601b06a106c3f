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
    group: int | None = None            # k8s LeaderWorkerSet: pods in one group (leaderWorkerTemplate.size), one
                                        # node each; `gpus` is then per pod, `args` the leader's command
    worker_gpus: int | None = None      # LeaderWorkerSet: the GPUs each worker pod asks for
    ray: bool = False                   # LeaderWorkerSet: the leader starts a Ray cluster over the group's pods

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
        """How many GPUs the launch can see (gpu_pin's count); None when the launch does not say."""
        return self.gpu_pin[0]

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

    @property
    def gpu_pin(self) -> tuple[int | None, str | None]:
        """How many GPUs the launch makes visible, and how it says so: CUDA_VISIBLE_DEVICES (shell prefix,
        docker -e, env file), docker's --gpus ("all" or a count/device list), a pod's `nvidia.com/gpu` limit (k8s)
        or `requestGPU` (helm). (None, None): not pinned."""
        if self.group is not None:
            if self.gpus is None:
                return None, None
            return self.gpus * self.group, f"LeaderWorkerSet size {self.group} x nvidia.com/gpu {self.gpus}"
        if self.gpus is not None:
            return self.gpus, ("requestGPU" if self.form == "helm" else "nvidia.com/gpu") + f" {self.gpus}"
        for group in self.docker:
            if group[0].startswith("--gpus"):
                value = group[0].split("=", 1)[1] if "=" in group[0] else (group[1] if len(group) > 1 else "")
                v = value.strip().strip("'\"")
                if v.startswith("device="):
                    ids = [x for x in v[len("device="):].split(",") if x.strip()]
                    return len(ids) or None, f"docker --gpus {value}"
                if v.isdigit():
                    return int(v), f"docker --gpus {value}"
                break
        cvd = self.environment.get("CUDA_VISIBLE_DEVICES")
        if cvd is not None and cvd.strip() not in ("", "all"):
            ids = [x for x in cvd.split(",") if x.strip()]
            return len(ids), f"CUDA_VISIBLE_DEVICES={cvd}"
        return None, None



"""The user's vLLM launch as data, read from and written back to the forms people paste.

Forms:
  serve   `vllm serve MODEL --flag value ...` (also `python -m vllm.entrypoints.openai.api_server ...`,
          env assignments such as `CUDA_VISIBLE_DEVICES=0,1` before it, a shell script around it)
  docker  `docker run [docker options] vllm/vllm-openai[:tag] [vLLM arguments]` (podman too)
  yaml    a vLLM `--config` file: `key: value` lines (vLLM turns them into `--key value`)
  python  `LLM(model=..., max_model_len=...)` / `EngineArgs(...)`, read with `ast` (never evaluated)
  env     `KEY=VALUE` lines (`MODEL_NAME`, `MAX_MODEL_LEN`, ...), the convention of vLLM worker images
          (a docker `--env-file`)
  k8s     a Kubernetes Deployment / StatefulSet whose container runs vLLM (command/args, env, the
          `nvidia.com/gpu` limit: Launch.gpus); in a multi-document file, the first one that runs vLLM; a
          LeaderWorkerSet: the leader's command over leaderWorkerTemplate.size nodes (Launch.group)
  helm    a vLLM production-stack values file: servingEngineSpec.modelSpec[] (modelURL, vllmConfig, requestGPU)

A Launch keeps every argument in order, spelled as written; arguments kvfit does not model, or does not
know, are kept and rendered back untouched. The property the tests hold it to:
`parse(render(parse(x))) == parse(x)` for every form. Equality ignores spelling details (`--max_model_len`
vs `--max-model-len`, `--flag=value` vs `--flag value`) but not order or values.

Pure: no files, no network. The caller reads files and passes the text.
"""

from __future__ import annotations


from .grammar import ASSIGN, FORMS, canonical, is_known, kind_of
from .model import POSITIONAL, Arg, Expr, Launch
from .read import detect, parse, parse_argv, split_shell, parse_env, parse_python, parse_shell, parse_yaml, yaml_load
from .write import argv, convert, native, quote, render, updated, with_gpus
from .engine_args import LaunchValues, apply, compose, read as read_values, with_config



def parse_helm(*args, **kw) -> Launch:
    """A production-stack Helm values file (launch/kube.py; PyYAML loads only when used)."""
    from .kube import parse_helm as parse

    return parse(*args, **kw)


def parse_k8s(*args, **kw) -> Launch:
    """A Kubernetes Deployment / StatefulSet running vLLM (launch/kube.py)."""
    from .kube import parse_k8s as parse

    return parse(*args, **kw)

"""Builds vLLM's own model classes for config.json files on the meta device and reports their parameters.

Not a test module: tests/engine/test_weights_vllm.py runs it as a subprocess.

    python weights_runner.py DIR [DIR ...]

For each directory it makes the VllmConfig vLLM would make for that config.json (EngineArgs, TP 1, dummy
load format), instantiates the model class vLLM picks (model_loader.utils.initialize_model) under
torch.device("meta") - no memory, no weights, no engine - and counts the elements of every parameter by
dtype, quantized ones included (each quantization method's create_weights runs as in a real launch).
The last stdout line is one JSON object: {dirname: {"params": {dtype: elements}} | {"error": "..."}}.
Nothing here computes a count: every number is the shape vLLM's code gave a parameter.

Distributed state is initialized once, with the first directory's config; pass a MoE model first so the
expert-parallel group exists for every MoE model after it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

STUBS = Path(__file__).resolve().parent / "stubs"


def main(dirs: list[str]) -> None:
    if importlib.util.find_spec("torchvision") is None:      # multimodal model files import it at module level
        sys.path.insert(0, str(STUBS))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(STUBS), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

    import torch
    from vllm.config import set_current_vllm_config
    from vllm.distributed import ensure_model_parallel_initialized, init_distributed_environment
    from vllm.engine.arg_utils import EngineArgs
    from vllm.model_executor.model_loader.utils import initialize_model
    from vllm.utils.torch_utils import set_default_torch_dtype

    initialized = False
    out: dict[str, dict] = {}
    for d in dirs:
        name = Path(d).name
        try:
            vc = EngineArgs(model=d, skip_tokenizer_init=True, load_format="dummy", enforce_eager=True,
                            max_model_len=2048 if "whisper" not in name else None).create_engine_config()
            with set_current_vllm_config(vc):
                if not initialized:
                    init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                                 distributed_init_method=f"tcp://127.0.0.1:{_free_port()}")
                    ensure_model_parallel_initialized(1, 1)
                    initialized = True
                with set_default_torch_dtype(vc.model_config.dtype), torch.device("meta"):
                    model = initialize_model(vllm_config=vc)
            counts: dict[str, int] = {}
            for _, p in model.named_parameters(remove_duplicate=True):
                dt = str(p.dtype).replace("torch.", "")
                counts[dt] = counts.get(dt, 0) + p.numel()
            out[name] = {"params": counts, "dtype": str(vc.model_config.dtype).replace("torch.", "")}
            del model
        except Exception as e:  # noqa: BLE001 - a model vLLM cannot build here is a result too
            out[name] = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
    sys.stdout.flush()
    print(json.dumps(out), flush=True)


def _free_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(0)

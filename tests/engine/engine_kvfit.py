"""kvfit's side of an engine case, through its public pure API (normalize + plan.evaluate)."""

from __future__ import annotations

import json
from pathlib import Path

from kvfit.plan import evaluate as plan
from kvfit.arch.normalize import normalize
from kvfit.gpu.model import Gpu
from kvfit.memory.profiles import profile_for
from kvfit.settings import Settings

DATA = Path(__file__).resolve().parent.parent / "data" / "engine"
CPU = Gpu("CPU (vLLM CPU backend)", 0, (0, 0), source="--device cpu")


def settings_for(case, probes: dict) -> Settings:
    """The same launch as kvfit Settings: vLLM's LLM(...) keyword names are kvfit's field names. `probes` are
    the torch probes vLLM's CPU platform saw for this case (engine_runner.py records them)."""
    engine = dict(case.engine)
    engine.pop("skip_tokenizer_init", None)
    kw = dict(device="cpu", entrypoint="llm", kv_cache_memory_bytes=case.budget,
              max_model_len=case.max_model_len, enforce_eager=True,
              cpu_avx512_bf16=probes["avx512_bf16"], cpu_amx=probes["amx_tile"])
    spec = engine.pop("speculative_config", None)
    if spec:
        kw.update(speculative_method=spec["method"], num_speculative_tokens=spec["num_speculative_tokens"],
                  speculative_model=spec.get("model"))
    kw.update(engine)
    return Settings(**kw)


def evaluate(case, probes: dict) -> plan.Result:
    config = json.loads((DATA / case.model / "config.json").read_text())
    arch = normalize(config)
    model = plan.Model(case.model, "local", str(DATA / case.model), arch, None)
    return plan.evaluate(model, CPU, settings_for(case, probes), profile_for("0.32.0"))

"""Hypothesis strategies for kvfit's inputs, seeded from real config.json files (tests/data/fuzz_seeds).

Configs: the seeds mutated field by field (odd values of every JSON type, NaN and Infinity, zero,
negative and huge sizes, missing or wrongly nested fields, wrong-length layer_types, unknown model
types) and as text (truncated, spliced, non-standard tokens, deep nesting). Command lines: the
`check` flags with valid, borderline and invalid values, conflicting combinations, unknown options.
"""

from __future__ import annotations

import copy
import json
import math
import re

from hypothesis import strategies as st

from .harness import seed_quant_configs, seed_texts

SEED_TEXTS = seed_texts()
SEED_CONFIGS = {k: json.loads(v) for k, v in SEED_TEXTS.items()}   # json accepts Infinity/NaN
QUANT_CONFIGS = seed_quant_configs()

# Fields the normalizer and the KV/memory code read, plus every key the seeds use.
READ_KEYS = [
    "model_type", "architectures", "num_hidden_layers", "n_layer", "num_layers", "n_layers",
    "hidden_size", "n_embd", "d_model", "num_attention_heads", "n_head", "num_heads",
    "num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num", "head_dim",
    "hidden_size_per_head", "kv_channels", "max_position_embeddings", "n_positions", "max_seq_len",
    "seq_length", "model_max_length", "max_sequence_length", "vocab_size", "intermediate_size",
    "ffn_dim", "n_inner", "sliding_window", "use_sliding_window", "sliding_window_pattern",
    "layer_types", "rope_scaling", "rope_parameters", "original_max_position_embeddings",
    "kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim", "quantization_config",
    "torch_dtype", "dtype", "text_config", "tie_word_embeddings", "num_experts", "num_local_experts",
    "n_routed_experts", "num_experts_per_tok", "moe_intermediate_size", "attention_chunk_size",
    "no_rope_layers", "no_rope_layer_interval", "multi_query", "new_decoder_architecture",
    "hybrid_override_pattern", "block_configs", "auto_map", "attn_layer_period", "attn_layer_offset",
    "full_attention_interval", "mamba_d_state", "ssm_state_size", "is_encoder_decoder", "decoder",
    "language_config", "llm_config", "thinker_config", "vision_config",
]
ALL_KEYS = sorted(set(READ_KEYS) | {k for c in SEED_CONFIGS.values() for k in c}
                  | {k for c in SEED_CONFIGS.values() if isinstance(c.get("text_config"), dict)
                     for k in c["text_config"]})
MODEL_TYPES = ["llama", "mistral", "qwen2", "qwen3", "qwen3_moe", "gemma2", "gemma3", "gemma3_text",
               "deepseek_v2", "deepseek_v3", "falcon", "RefinedWeb", "gpt_oss", "llama4_text", "llama4",
               "nemotron_h", "jamba", "qwen3_next", "chatglm", "phi3", "bert", "roberta", "mamba",
               "falcon_mamba", "t5", "whisper", "totally_unknown_model", "", "LLAMA", "llama ", "\u0000"]
LAYER_TYPES = ["full_attention", "sliding_attention", "chunked_attention", "linear_attention",
               "mamba", "attention", "global_attention", "local_attention", "cross_attention", "moe", ""]

FINITE_SPECIAL = [0, 1, -1, 2, 3, 7, 16, 64, 128, 4096, 131072, 2**31 - 1, 2**31, 2**32, 2**53 + 1,
                  2**63, 10**12, 10**18, 10**30, -(2**63), 0.5, 1.5, -0.0, 1e-300, 1e300, 4096.0]
NON_FINITE = [math.nan, math.inf, -math.inf]


def _scalar():
    return st.one_of(
        st.none(), st.booleans(),
        st.sampled_from(FINITE_SPECIAL + NON_FINITE),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(["", "32", "4096", "abc", "NaN", "Infinity", "1e9", "-1", "auto", "bfloat16",
                         "torch.float16", "fp8", "full_attention", "[/]", "[bold]x[/bold]", "\u00e9\u4e2d"]),
        st.text(max_size=12),
    )


# Containers where scalars belong (and the reverse): a fixed menu is as good at type confusion as
# random trees, and cheap enough to generate the 10,000-example budget in CI time.
ODD_CONTAINERS = [
    [], {}, [None], [1, 2], [0], [-1], ["full_attention"], [math.nan], [[]], [{}], {"a": 1}, {"": None},
    {"type": "yarn", "factor": "x"}, {"rope_type": ["yarn"]}, {"factor": math.inf}, {"model_type": {}},
    {"num_hidden_layers": -1}, {"text_config": []}, [{"model_type": "llama"}], {"0": [1, 2, 3]},
    [True, False], ["32", "64"], [1e308, -1e308], {"num_bits": 4, "type": "float"}, {"x": {"y": {"z": []}}},
    [[1, [2, [3, [4]]]]], {"full_attention": {"rope_type": "default"}, "sliding_attention": 7},
]
ODD = st.one_of(_scalar(), st.sampled_from(ODD_CONTAINERS).map(copy.deepcopy),
                st.lists(_scalar(), max_size=4), st.dictionaries(st.sampled_from(ALL_KEYS), _scalar(), max_size=3))
SIZE = st.one_of(st.sampled_from(FINITE_SPECIAL + NON_FINITE), st.integers(-(2**40), 2**40),
                 st.floats(allow_nan=True, allow_infinity=True))
ROPE = st.one_of(ODD, st.fixed_dictionaries(
    {"rope_type": st.sampled_from(["default", "linear", "dynamic", "yarn", "longrope", "su", "llama3",
                                   "deepseek_yarn", "mrope", "xyz"]) | ODD},
    optional={"type": st.sampled_from(["linear", "yarn", "su"]) | ODD, "factor": SIZE | ODD,
              "original_max_position_embeddings": SIZE,
              "short_factor": st.lists(SIZE, max_size=3), "long_factor": ODD}))
QUANT = st.one_of(ODD, st.fixed_dictionaries(
    {}, optional={"quant_method": st.sampled_from(["fp8", "awq", "gptq", "mxfp4", "modelopt", "compressed-tensors"]) | ODD,
                  "kv_cache_scheme": ODD | st.fixed_dictionaries({}, optional={"type": ODD, "num_bits": SIZE}),
                  "kv_cache_quant_algo": st.sampled_from(["FP8", "NVFP4", "fp4", "int8"]) | ODD}))


OPS = [f"{op}{where}" for op in ("set", "set", "set", "size", "delete", "delete", "model_type", "layer_types",
                                  "rope", "quant", "nest", "window", "heads") for where in ("", "@text")]


@st.composite
def mutated_config(draw, allow_non_dict: bool = True):
    """A seed config with 1..8 structural mutations (any JSON value; usually a dict)."""
    name = draw(st.sampled_from(sorted(SEED_CONFIGS)))
    cfg = copy.deepcopy(SEED_CONFIGS[name])
    for _ in range(draw(st.integers(1, 5))):
        target = cfg
        tc = cfg.get("text_config") if isinstance(cfg, dict) else None
        op = draw(st.sampled_from(OPS))
        if isinstance(tc, dict) and op.endswith("@text"):
            target = tc
        op = op.split("@")[0]
        if not isinstance(target, dict):
            break
        key = draw(st.sampled_from(list(target) + ALL_KEYS))
        if op == "set":
            target[key] = draw(ODD)
        elif op == "size":
            target[draw(st.sampled_from(READ_KEYS[:40]))] = draw(SIZE)
        elif op == "delete":
            target.pop(key, None)
        elif op == "model_type":
            target["model_type"] = draw(st.sampled_from(MODEL_TYPES) | ODD)
        elif op == "layer_types":
            n = target.get("num_hidden_layers")
            n = n if isinstance(n, int) and 0 <= n < 300 else 8
            length = draw(st.sampled_from([0, 1, max(n - 1, 0), n, n + 1, 2 * n]))
            target["layer_types"] = draw(st.lists(st.sampled_from(LAYER_TYPES) | ODD, min_size=length,
                                                  max_size=length)) if draw(st.booleans()) else draw(ODD)
        elif op == "rope":
            target[draw(st.sampled_from(["rope_scaling", "rope_parameters"]))] = draw(ROPE)
        elif op == "quant":
            cfg["quantization_config"] = draw(QUANT)
        elif op == "nest":
            how = draw(st.sampled_from(["list", "str", "null", "move-in", "move-out", "deep", "thinker"]))
            if how == "list":
                cfg["text_config"] = [copy.deepcopy(tc)] if isinstance(tc, dict) else [1, 2]
            elif how == "str":
                cfg["text_config"] = json.dumps(tc) if tc is not None else "{}"
            elif how == "null":
                cfg["text_config"] = None
            elif how == "move-in":
                cfg["text_config"] = {k: v for k, v in cfg.items() if k != "text_config"}
                for k in draw(st.lists(st.sampled_from(sorted(cfg["text_config"]) or ["x"]), max_size=5)):
                    cfg.pop(k, None)
            elif how == "move-out" and isinstance(tc, dict):
                cfg.update(cfg.pop("text_config"))
            elif how == "deep":
                cfg["text_config"] = {"text_config": tc if tc is not None else {}}
            else:
                cfg["thinker_config"] = {"text_config": draw(ODD) if draw(st.booleans()) else tc}
        elif op == "window":
            target["sliding_window"] = draw(SIZE | ODD | st.lists(SIZE | st.none(), max_size=4))
            target["use_sliding_window"] = draw(ODD)
        elif op == "heads":
            for k in ("num_attention_heads", "num_key_value_heads", "head_dim", "hidden_size"):
                if draw(st.booleans()):
                    target[k] = draw(SIZE)
    if allow_non_dict and draw(st.integers(0, 40)) == 0:
        return draw(st.sampled_from([[], [cfg], None, 3, "config", True]))
    return cfg


def dumps(value) -> str:
    """JSON text for any fuzz value; NaN/Infinity written as the non-standard tokens real configs use."""
    return json.dumps(value, allow_nan=True)


_NUMBER = re.compile(r"(?<=[:\[,\s])-?\d+(\.\d+)?([eE][+-]?\d+)?(?=[,\]\}\s])")


@st.composite
def mutated_text(draw):
    """config.json text: a seed (or a mutated config) damaged as text."""
    if draw(st.booleans()):
        text = SEED_TEXTS[draw(st.sampled_from(sorted(SEED_TEXTS)))]
    else:
        text = dumps(draw(mutated_config()))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "insert", "delete", "number", "number", "wrap", "bom",
                                   "replace_all", "deep", "dup_key", "controls"]))
        if op == "truncate" and text:
            text = text[:draw(st.integers(0, len(text) - 1))]
        elif op == "insert":
            pos = draw(st.integers(0, len(text)))
            snippet = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", ",", "}", "]", "{", "[", '"',
                                            "null", "1e999", "-0", "\\u0000", "\\ud800", "//", "'", "\x00",
                                            "9" * 5000, '"a":1,']) | st.text(max_size=8))
            text = text[:pos] + snippet + text[pos:]
        elif op == "delete" and text:
            a = draw(st.integers(0, len(text) - 1))
            text = text[:a] + text[a + draw(st.integers(1, 50)):]
        elif op == "number":
            matches = list(_NUMBER.finditer(text))
            if matches:
                m = matches[draw(st.integers(0, len(matches) - 1))]
                new = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "0", "-1",
                                            "1e309", "123456789012345678901234567890", "0.5", "-0.0",
                                            '"32"', "null", "true", "[]", "{}"]))
                text = text[:m.start()] + new + text[m.end():]
        elif op == "wrap":
            text = draw(st.sampled_from(["[%s]", "%s%s", '"%s"', '{"config": %s}', "%s garbage"])).replace(
                "%s", text)
        elif op == "bom":
            text = "\ufeff" + text
        elif op == "replace_all":
            text = draw(st.sampled_from(["", " ", "null", "[]", "0", '"x"', "{}", "{", "}", "NaN", "true",
                                         "[" * 200000, "{\"a\":" * 100000]) | st.text(max_size=40))
        elif op == "deep":
            depth = draw(st.sampled_from([10, 1000, 5000, 100000]))
            text = text.replace('"model_type"', '"nested": ' + "[" * depth + "]" * depth + ', "model_type"', 1)
        elif op == "dup_key":
            text = text.replace("{", '{"model_type": 7, ', 1)
        elif op == "controls":
            text = text.replace(" ", draw(st.sampled_from(["\t", "\x0b", "\r", "\u00a0", "\x00"])), 3)
    return text


# --- command lines -----------------------------------------------------------------------------

BUNDLED = ["Qwen/Qwen3-8B", "meta-llama/Llama-3.1-8B-Instruct", "google/gemma-3-4b-it",
           "deepseek-ai/DeepSeek-V2-Lite-Chat", "openai/gpt-oss-20b", "mistralai/Mistral-7B-Instruct-v0.1",
           "canopylabs/orpheus-3b-0.1-ft", "tiiuae/falcon-mamba-7b", "qwen/qwen3-0.6b",
           "meta-llama/Llama-3.1-70B-Instruct", "deepseek-ai/DeepSeek-R1", "google/gemma-2-2b-it"]
GPUS = ["RTX 3090", "H100", "NVIDIA H100 80GB HBM3", "A100", "A100-SXM4-80GB", "L4", "T4", "V100",
        "rtx4090", "h200", "A10", "NVIDIA", "GeForce", "", " ", "nope", "[/]", "4090", "B200", "MI300X"]
SIZES = ["24GiB", "79.25GiB", "24GB", "1", "0", "-1", "1e999", "nan", "inf", "abc", "", "1TiB",
         "100000TiB", "0.5GiB", "24 GiB", "24gib", "24Gi", "24G", "24k", ".5GiB", "1.5.5GiB",
         "9" * 40, "-24GiB", "24GiBs", "\u0663GiB"]
INTS = ["1", "2", "4", "8", "0", "-1", "3", "16", "32", "1024", "007", "99999999999999", "9" * 30,
        "abc", "", "1.5", "2.0", "0x10", " 2", "+2", "-0", "1_000", "\u0663"]
LENS = ["32768", "32k", "32K", "1K", "1k", "-1", "auto", "AUTO", "0", "-5", "1", "16", "4096",
        "131072", "1.5", "1.5k", "1e5", "nan", "", "abc", "9" * 30, "10000000", "2147483648", "1T",
        "128000", "8192", "40960", " 4096 "]
UTILS = ["0.9", "0.92", "0.5", "1", "1.0", "0", "0.0", "-0.1", "1.01", "1.5", "nan", "inf", "-inf",
         "1e-300", "0.01", "abc", "", "90%", "0,9", "5e-1", "0.999999"]
DTYPES = ["auto", "half", "float16", "bfloat16", "float", "float32", "fp8", "int8", "bf16", "", "AUTO"]
KV_DTYPES = ["auto", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_ds_mla", "nvfp4_ds_mla", "int8", "float16",
             "bfloat16", "float32", "fp4", "", "Auto"]
VERSIONS = ["0.32.0", "0.6.3", "0.8.5", "0.10.0", "0.21.0", "0.26.0", "v0.32.0", "1.0", "0.4", "latest",
            "", "abc", "0.9", "99.99.99", "0.32.0rc1", "0.-1.0"]

VALUE = {
    "--max-model-len": st.sampled_from(LENS) | st.text(max_size=6),
    "--gpu-memory-utilization": st.sampled_from(UTILS) | st.text(max_size=6),
    "--tensor-parallel-size": st.sampled_from(INTS), "-tp": st.sampled_from(INTS),
    "--pipeline-parallel-size": st.sampled_from(INTS), "-pp": st.sampled_from(INTS),
    "--dtype": st.sampled_from(DTYPES), "--kv-cache-dtype": st.sampled_from(KV_DTYPES),
    "--block-size": st.sampled_from(INTS + ["64", "128", "256", "48"]),
    "--max-num-seqs": st.sampled_from(INTS), "--max-num-batched-tokens": st.sampled_from(LENS + INTS),
    "--kv-cache-memory-bytes": st.sampled_from(SIZES), "--gpu": st.sampled_from(GPUS) | st.text(max_size=8),
    "--gpu-memory": st.sampled_from(SIZES), "--vllm-version": st.sampled_from(VERSIONS),
    "--entrypoint": st.sampled_from(["serve", "llm", "LLM", "", "api"]),
    "--device": st.sampled_from(["cuda", "cpu", "CUDA", "tpu", ""]),
    "--revision": st.sampled_from(["main", "v1.0", "../../etc", "refs/pr/1", "", "a" * 40]),
}
FLAGS = ["--enforce-eager", "--offline", "--json"]
ODD_TOKENS = ["--help", "-h", "--", "-", "--unknown", "--json=1", "--max-model-len=", "--gpu=H100",
              "-tp=2", "-tp2", "--GPU", "--max-model-length", "extra-arg", "---", "--no-json"]


@st.composite
def check_options(draw, *, allow_odd: bool = True) -> list[str]:
    """The flags after `check MODEL`: a few options, valid or not, sometimes repeated or conflicting."""
    argv: list[str] = []
    for name in draw(st.lists(st.sampled_from(sorted(VALUE)), max_size=6)):
        value = draw(VALUE[name])
        if draw(st.integers(0, 5)) == 0:
            argv.append(f"{name}={value}")
        else:
            argv += [name, value]
    argv += draw(st.lists(st.sampled_from(FLAGS), max_size=3, unique=True))
    conflict = draw(st.sampled_from([None] * 6 + ["cpu-gpu", "kvbytes-util", "mnbt-seqs", "tp-huge",
                                                   "pp-huge", "block-odd", "cpu-space"]))
    argv += {None: [], "cpu-gpu": ["--device", "cpu", "--gpu", "H100"],
             "kvbytes-util": ["--kv-cache-memory-bytes", "4GiB", "--gpu-memory-utilization", "0.5"],
             "mnbt-seqs": ["--max-num-batched-tokens", "16", "--max-num-seqs", "256"],
             "tp-huge": ["-tp", draw(st.sampled_from(["64", "3", "1000000", "999999999999"]))],
             "pp-huge": ["-pp", draw(st.sampled_from(["64", "7", "1000000", "999999999999"]))],
             "block-odd": ["--block-size", draw(st.sampled_from(["8", "24", "1", "4096", "9" * 20]))],
             "cpu-space": ["--device", "cpu", "--kv-cache-memory-bytes", draw(st.sampled_from(SIZES))]}[conflict]
    if allow_odd and draw(st.integers(0, 6)) == 0:
        pos = draw(st.integers(0, len(argv)))
        argv.insert(pos, draw(st.sampled_from(ODD_TOKENS)))
    return argv


MODEL_REFS = st.one_of(
    st.sampled_from(BUNDLED),
    st.sampled_from(["", " ", "org/not-bundled-model", "not/a/valid/id", "./missing", "/nonexistent/x",
                     "~/nope", "missing.json", "..", ".", "[/x]", "a/[/b]", "org/na..me", "-x",
                     "\u4e2d\u6587/\u6a21\u578b", "x" * 300, "org/" + "y" * 120, "Qwen/Qwen3-8B ",
                     "QWEN/QWEN3-8B", "Qwen/Qwen3-8B/extra", "a\x00b"]),
    st.text(max_size=20),
)

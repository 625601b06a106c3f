"""Orpheus TTS tokens offline with vLLM's LLM class, sized by kvfit for a shared 24 GB card.

    kvfit check canopylabs/orpheus-3b-0.1-ft --gpu "RTX 4090" --entrypoint llm --quantization fp8 \
        --gpu-memory-utilization 0.35 --max-vram 9GB --context 8192 --concurrency 8 --format python

kvfit reads this file with `ast` (never runs it): kvfit check --launch examples/orpheus/orpheus_llm.py ...
"""

from vllm import LLM, SamplingParams

llm = LLM(
    model="canopylabs/orpheus-3b-0.1-ft",
    gpu_memory_utilization=0.35,
    quantization="fp8",
    max_model_len=8192,
    kv_cache_dtype="fp8",
    max_num_seqs=8,
)

params = SamplingParams(temperature=0.6, top_p=0.8, repetition_penalty=1.1, max_tokens=2000,
                        stop_token_ids=[128258])
prompts = ["tara: Hey there, this is Orpheus, running in under nine gigabytes."]

if __name__ == "__main__":
    for out in llm.generate(prompts, params):
        print(len(out.outputs[0].token_ids), "audio tokens")

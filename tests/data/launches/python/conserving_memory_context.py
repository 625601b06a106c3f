# source: vLLM docs, conserving memory (reduce context length and batch size)
from vllm import LLM

llm = LLM(model="adept/fuyu-8b", max_model_len=2048, max_num_seqs=2)

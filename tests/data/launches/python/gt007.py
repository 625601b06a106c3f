# source: calibration gt-007 (vllm-project/vllm issue)
from vllm import LLM

llm = LLM(model='Qwen/Qwen3-1.7B', max_num_seqs=1, max_model_len=1024)

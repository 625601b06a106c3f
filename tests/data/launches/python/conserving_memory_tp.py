# source: vLLM docs, conserving memory (tensor parallelism)
from vllm import LLM

llm = LLM(model="ibm-granite/granite-3.1-8b-instruct", tensor_parallel_size=2)

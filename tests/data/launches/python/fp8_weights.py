# source: vLLM docs, FP8 W8A8 (online dynamic quantization; the model is positional)
from vllm import LLM

model = LLM("facebook/opt-125m", quantization="fp8")
result = model.generate("Hello, my name is")
print(result[0].outputs[0].text)

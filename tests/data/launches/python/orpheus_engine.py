# source: adapted from canopyai/Orpheus-TTS orpheus_tts/engine_class.py (AsyncEngineArgs with attributes:
# values kvfit cannot read without running the code, which it never does)
from vllm import AsyncEngineArgs, AsyncLLMEngine


class OrpheusModel:
    def __init__(self, model_name, dtype="bfloat16", max_model_len=2048, gpu_memory_utilization=0.9):
        self.model_name = model_name
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.gpu_memory_utilization = gpu_memory_utilization
        self.engine = self._setup_engine()

    def _setup_engine(self):
        engine_args = AsyncEngineArgs(
            model=self.model_name,
            dtype=self.dtype,
            max_model_len=self.max_model_len,
            gpu_memory_utilization=self.gpu_memory_utilization,
        )
        return AsyncLLMEngine.from_engine_args(engine_args)

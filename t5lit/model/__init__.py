"""t5lit's model: pure single-device PyTorch (no Lightning, no data code). See DESIGN.md section 3.

CPU fast paths are applied from outside: ``t5lit.model.cpu.apply_cpu_fast_paths(model)``.
"""

from t5lit.model.architectures import (
    BaseModel,
    DecoderOnly,
    EncoderDecoder,
    PrefixLM,
    build_model,
    count_parameters,
    register_architecture,
)
from t5lit.model.generate import generate

__all__ = ["build_model", "count_parameters", "generate", "BaseModel", "EncoderDecoder", "DecoderOnly", "PrefixLM",
           "register_architecture"]

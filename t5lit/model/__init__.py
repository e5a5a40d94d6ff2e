"""t5lit's model: pure single-device PyTorch (no Lightning, no data code). See DESIGN.md section 3."""

from t5lit.model.architectures import DecoderOnly, EncoderDecoder, PrefixLM, build_model, count_parameters
from t5lit.model.generate import generate

__all__ = ["build_model", "count_parameters", "generate", "EncoderDecoder", "DecoderOnly", "PrefixLM"]

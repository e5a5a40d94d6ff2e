"""t5lit: the systematic study of text-to-text transformers (Raffel et al., arXiv 1910.10683) in PyTorch Lightning."""

__version__ = "0.1.0"

"""PaDA Studio: pattern-guided data augmentation for small language models."""

__version__ = "0.1.0"

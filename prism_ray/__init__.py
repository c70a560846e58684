"""prism-ray: SFT -> PRISM alignment -> RLVR for vision-language models on Ray."""

__version__ = "0.1.0"

"""CLIP-It: language-guided video summarization, in JAX/Flax."""

__version__ = '0.1.0'

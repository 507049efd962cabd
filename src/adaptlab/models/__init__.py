"""Resolve a model name (builtin | hub id | local dir | .gguf file) to a tokenizer and a model."""

from adaptlab.models.device import auto_device, auto_dtype
from adaptlab.models.registry import BUILTIN_MODELS, LoadedModel, load_model, load_tokenizer
from adaptlab.models.tiny import tiny_llama

__all__ = ["BUILTIN_MODELS", "LoadedModel", "auto_device", "auto_dtype", "load_model", "load_tokenizer", "tiny_llama"]

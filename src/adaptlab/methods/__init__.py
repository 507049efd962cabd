"""Adaptation methods behind one registry: `get_method(name)`; `METHODS` lists them all."""

import adaptlab.quant  # noqa: F401  (first: it quiets bitsandbytes' import-time warning)
from adaptlab.methods import full, ia3, loftq, lora, qalora, qlora  # noqa: F401  (importing registers them)
from adaptlab.methods.base import METHODS, Footprint, Method, MethodConfig, get_method, register

__all__ = ["METHODS", "Footprint", "Method", "MethodConfig", "get_method", "register"]

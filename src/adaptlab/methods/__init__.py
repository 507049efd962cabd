"""Adaptation methods behind one registry: `get_method(name)`; `METHODS` lists them all."""

from adaptlab.methods import full, lora  # noqa: F401  (importing registers them)
from adaptlab.methods.base import METHODS, Footprint, Method, MethodConfig, get_method, register

__all__ = ["METHODS", "Footprint", "Method", "MethodConfig", "get_method", "register"]

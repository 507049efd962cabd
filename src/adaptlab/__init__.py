"""adaptlab: adapt a language model to a task by every route, and measure which one is worth it."""

__version__ = "0.1.0"

"""Evaluation: task registry, task kinds (multiple_choice, generate, code, classify), scoring and metrics."""

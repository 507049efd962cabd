"""Prompting: a spec of the five prompt components plus exemplars, rendered through the chat template,
scored on a task by the eval harness (constrained or generate-and-parse) and ablated component by component.

Names load lazily (PEP 562) so that importing the spec alone, as the CLI does, does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "spec": ["COMPONENTS", "PromptSpec", "Sections", "SpecError", "load_spec", "parse_spec"],
    "render": ["build_messages", "render_prompt"],
    "exemplars": ["SELECTORS", "builtin_embedder", "select_exemplars"],
    "run": ["MODES", "ClassifyTask", "PromptResult", "as_eval_task", "build_prompts", "run_prompt", "spec_context"],
    "tasks": ["load_task", "prompt_task_names", "task_from_records"],
    "generative": ["GENERATE_TASKS", "GenerateTask"],
    "ablate": ["AblationResult", "ablate", "plot_ablation"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = list(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'adaptlab.prompting' has no attribute {name!r}")
    return getattr(importlib.import_module(f"adaptlab.prompting.{_MODULE_OF[name]}"), name)

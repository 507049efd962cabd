"""Rendering: each component on/off changes exactly its part of the prompt; exemplars are chat turns."""

from __future__ import annotations

import pytest

from adaptlab.models import load_tokenizer
from adaptlab.prompting.render import build_messages, render_prompt
from adaptlab.prompting.spec import COMPONENTS, PromptSpec, Sections

FULL = PromptSpec(role="ROLE for {labels}", instruction="INSTR among {labels}", output_format="FORMAT",
                  steps=["STEP_A", "STEP_B"], delimiters=("<<<", ">>>"),
                  structure=Sections(task="H_TASK", format="H_FORMAT", steps="H_STEPS", input="H_INPUT"))
CHOICES = ["yes", "no"]
EXEMPLARS = [("EX_ONE", "yes"), ("EX_TWO", "no")]


def _messages(spec: PromptSpec) -> list[dict[str, str]]:
    return build_messages(spec, "QUERY", EXEMPLARS, CHOICES)


def test_full_prompt_layout():
    assert _messages(FULL) == [
        {"role": "system", "content": "ROLE for yes, no"},
        {"role": "user", "content": "## H_TASK\nINSTR among yes, no\n\n## H_FORMAT\nFORMAT\n\n"
                                    "## H_STEPS\n1. STEP_A\n2. STEP_B\n\n## H_INPUT\n<<<\nEX_ONE\n>>>"},
        {"role": "assistant", "content": "yes"},
        {"role": "user", "content": "## H_INPUT\n<<<\nEX_TWO\n>>>"},
        {"role": "assistant", "content": "no"},
        {"role": "user", "content": "## H_INPUT\n<<<\nQUERY\n>>>"},
    ]


def _cut(*parts: str):
    def edit(messages):
        out = []
        for m in messages:
            content = m["content"]
            for p in parts:
                content = content.replace(p, "")
            out.append({**m, "content": content})
        return out
    return edit


# what switching each component off must remove from the full prompt, and nothing else
REMOVED = {
    "role": lambda ms: ms[1:],
    "instruction": _cut("## H_TASK\nINSTR among yes, no\n\n", "## H_FORMAT\nFORMAT\n\n"),
    "steps": _cut("## H_STEPS\n1. STEP_A\n2. STEP_B\n\n"),
    "delimiters": _cut("<<<\n", "\n>>>"),
    "structure": _cut("## H_TASK\n", "## H_FORMAT\n", "## H_STEPS\n", "## H_INPUT\n"),
}


@pytest.mark.parametrize("component", list(COMPONENTS))
def test_switching_off_removes_exactly_its_part(component):
    assert set(REMOVED) == set(COMPONENTS)
    off = _messages(FULL.without(component))
    assert off == REMOVED[component](_messages(FULL))
    assert off != _messages(FULL)


@pytest.mark.parametrize("component", list(COMPONENTS))
def test_switching_on_alone_adds_exactly_its_part(component):
    bare = _messages(PromptSpec())
    only = _messages(FULL.only(component))
    assert bare == [  # bare: plain inputs and answers
        {"role": "user", "content": "EX_ONE"}, {"role": "assistant", "content": "yes"},
        {"role": "user", "content": "EX_TWO"}, {"role": "assistant", "content": "no"},
        {"role": "user", "content": "QUERY"}]
    assert only != bare
    # removing the component again gives the bare prompt back, whatever its part was
    assert _messages(FULL.only(component).without(component)) == bare


def test_single_step_is_not_numbered_and_zero_shot_states_task_with_query():
    spec = PromptSpec(instruction="Label it.", steps=["Think step by step."])
    assert build_messages(spec, "Q") == [{"role": "user", "content": "Label it.\n\nThink step by step.\n\nQ"}]


def test_rendered_through_chat_template():
    tok = load_tokenizer("smollm2-135m")
    text = render_prompt(tok, _messages(FULL))
    assert text.startswith("<|im_start|>system\nROLE for yes, no<|im_end|>\n")
    assert "<|im_start|>assistant\nyes<|im_end|>\n<|im_start|>user\n## H_INPUT\n<<<\nEX_TWO" in text
    assert text.endswith("<<<\nQUERY\n>>><|im_end|>\n<|im_start|>assistant\n")
    assert text == tok.apply_chat_template(_messages(FULL), tokenize=False, add_generation_prompt=True)


def test_template_less_tokenizer_is_a_clear_error():
    class NoTemplate:
        chat_template = None

    with pytest.raises(ValueError, match="no chat template"):
        render_prompt(NoTemplate(), [{"role": "user", "content": "x"}])

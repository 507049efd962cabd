"""The prompt spec: five optional components of prompt engineering plus the choice of exemplars.

Components (each off when its field is empty; `COMPONENTS` maps a component to its fields):

- `role`: the system message ("You are a financial analyst.")
- `instruction`: the task instruction and its output format
- `steps`: a step-by-step instruction (one string, or a list rendered as numbered steps)
- `delimiters`: marks around the user's input, e.g. `['"""', '"""']` or `["<text>", "</text>"]`
- `structure`: named sections (headings) around the instruction, format, steps and input

`{labels}` in any spec text becomes the task's answer words joined by ", ". `labels` maps the task's
own labels to the words the model answers with (e.g. `positive: положительный`).

`shots` exemplars are chosen by `selection` from the spec's own `exemplars` when it lists any, else
from the task's exemplar pool: `fixed` (the first k), `random` (seeded, label-balanced, per query)
or `similarity` (nearest by embedding).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from adaptlab.yamlfile import YamlFileError, read_mapping, validate

COMPONENTS: dict[str, tuple[str, ...]] = {
    "role": ("role",),
    "instruction": ("instruction", "output_format"),
    "steps": ("steps",),
    "delimiters": ("delimiters",),
    "structure": ("structure",),
}
SELECTIONS = ("fixed", "random", "similarity")


class SpecError(YamlFileError):
    """A prompt spec that cannot be used; the message names the file and the field."""


class Sections(BaseModel):
    """Headings of the named sections when `structure` is on (translate them for other languages)."""

    model_config = ConfigDict(extra="forbid")
    task: str = "Task"
    format: str = "Output format"
    steps: str = "Steps"
    input: str = "Input"


class Exemplar(BaseModel):
    """A hand-picked demonstration for `selection: fixed`."""

    model_config = ConfigDict(extra="forbid")
    text: str
    label: str


class PromptSpec(BaseModel):
    """How to prompt a model for a task: components, answer words and exemplar choice."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    role: str | None = None
    instruction: str | None = None
    output_format: str | None = None
    steps: list[str] | None = None
    delimiters: tuple[str, str] | None = None
    structure: Sections | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    shots: int = Field(default=0, ge=0)
    selection: Literal["fixed", "random", "similarity"] = "random"
    seed: int = 0
    exemplars: list[Exemplar] = Field(default_factory=list)

    @field_validator("steps", mode="before")
    @classmethod
    def _one_step(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @field_validator("delimiters", mode="before")
    @classmethod
    def _same_both_sides(cls, v: object) -> object:
        return (v, v) if isinstance(v, str) else v

    @field_validator("structure", mode="before")
    @classmethod
    def _default_sections(cls, v: object) -> object:
        if v is True:
            return Sections()
        return None if v is False else v

    def components(self) -> list[str]:
        """The components that are on."""
        return [c for c, fields in COMPONENTS.items() if any(getattr(self, f) for f in fields)]

    def without(self, *components: str) -> PromptSpec:
        """A copy with the named components switched off."""
        return self.model_copy(update={f: None for c in components for f in _fields(c)})

    def only(self, *components: str) -> PromptSpec:
        """A copy with every component off except the named ones."""
        return self.without(*(c for c in COMPONENTS if c not in components))

    def answer(self, label: str) -> str:
        """The word the model answers with for a task label."""
        return self.labels.get(label, label)


def _fields(component: str) -> tuple[str, ...]:
    if component not in COMPONENTS:
        raise SpecError(f"unknown prompt component {component!r}; components: {', '.join(COMPONENTS)}")
    return COMPONENTS[component]


def parse_spec(data: object, where: str = "prompt spec") -> PromptSpec:
    """Validate a mapping as a PromptSpec; errors name `where` and each bad field."""
    try:
        return validate({} if data is None else data, PromptSpec, where, "prompt spec")
    except YamlFileError as e:
        raise SpecError(str(e)) from None


def load_spec(path: str | Path) -> PromptSpec:
    """Read a PromptSpec from a YAML file."""
    try:
        data = read_mapping(path, "prompt spec")
    except YamlFileError as e:
        raise SpecError(str(e)) from None
    return parse_spec(data, str(path))

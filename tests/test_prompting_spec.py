"""PromptSpec: YAML in, errors name the field, components switch on and off."""

from __future__ import annotations

import pytest

from adaptlab.prompting.spec import COMPONENTS, PromptSpec, Sections, SpecError, load_spec, parse_spec

FULL = PromptSpec(role="R", instruction="I", output_format="F", steps=["a", "b"], delimiters=("<", ">"),
                  structure=Sections())


def test_yaml_round_trip_and_shorthands(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("role: R\nsteps: Think step by step.\ndelimiters: '###'\nstructure: true\nshots: 2\n"
                    "labels: {positive: положительный}\n", encoding="utf-8")
    spec = load_spec(path)
    assert spec.steps == ["Think step by step."]            # one string -> one step
    assert spec.delimiters == ("###", "###")                # one string -> both sides
    assert spec.structure == Sections()                     # true -> default headings
    assert spec.answer("positive") == "положительный" and spec.answer("neutral") == "neutral"
    assert spec.components() == ["role", "steps", "delimiters", "structure"]


@pytest.mark.parametrize(("yaml_text", "field"), [
    ("shots: -1\n", "shots"),
    ("selection: nearest\n", "selection"),
    ("delimiters: [a, b, c]\n", "delimiters"),
    ("structure: {tsk: Aufgabe}\n", "structure.tsk"),
    ("instructions: typo\n", "instructions"),
    ("exemplars: [{text: x}]\n", "exemplars.0.label"),
])
def test_bad_field_is_named(tmp_path, yaml_text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(SpecError, match=rf"(?s){path}.*'?{field}"):
        load_spec(path)


def test_unknown_field_lists_valid_fields():
    with pytest.raises(SpecError, match="unknown key 'rol'; allowed here: role, instruction"):
        parse_spec({"rol": "x"})


def test_not_a_mapping_and_bad_yaml(tmp_path):
    with pytest.raises(SpecError, match="(?s)invalid prompt spec.*valid dictionary"):
        parse_spec(["role"])
    path = tmp_path / "broken.yaml"
    path.write_text("role: [unclosed\n", encoding="utf-8")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)
    with pytest.raises(SpecError, match="cannot be read"):
        load_spec(tmp_path / "missing.yaml")


def test_empty_file_is_the_bare_spec(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    assert load_spec(path) == PromptSpec() and PromptSpec().components() == []


@pytest.mark.parametrize("component", list(COMPONENTS))
def test_without_and_only_switch_exactly_one_component(component):
    assert FULL.components() == list(COMPONENTS)
    assert FULL.without(component).components() == [c for c in COMPONENTS if c != component]
    assert FULL.only(component).components() == [component]
    for field in COMPONENTS[component]:
        assert getattr(FULL.without(component), field) is None


def test_unknown_component():
    with pytest.raises(SpecError, match="components: role, instruction, steps, delimiters, structure"):
        FULL.without("tone")


def test_examples_load():
    from pathlib import Path

    examples = sorted((Path(__file__).parent.parent / "examples").glob("prompt-*.yaml"))
    assert len(examples) >= 2
    for path in examples:
        assert load_spec(path).components()
    ru = load_spec(Path(__file__).parent.parent / "examples" / "prompt-sentiment-ru.yaml")
    assert ru.answer("negative") == "негативный" and "Соотнеси" in ru.instruction

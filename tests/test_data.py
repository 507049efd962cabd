import pytest

from adaptlab.data import BUILTIN_DATASETS, Chat, Classification, Instruction, MultipleChoice, Preference, load_records
from adaptlab.data.records import RecordError, to_record
from tests.conftest import write_jsonl


def test_layouts_map_onto_records():
    assert to_record({"instruction": "Add", "input": "1+1", "output": "2"}, "x") == Instruction("Add", "2", "1+1")
    sharegpt = to_record({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}, "x")
    assert sharegpt == Chat([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    openai = to_record({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                                     {"role": "assistant", "content": "a"}]}, "x")
    assert openai.messages[0]["role"] == "system" and openai.messages[2]["content"] == "a"
    assert to_record({"prompt": "p", "chosen": "c", "rejected": "r"}, "x") == Preference("p", "c", "r")
    assert to_record({"text": "t", "label": "positive"}, "x") == Classification("t", "positive")
    assert to_record({"question": "q", "choices": ["a", "b"], "answer": "B"}, "x") == MultipleChoice("q", ["a", "b"], 1)


def test_malformed_line_names_file_line_and_field(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n')
    with pytest.raises(RecordError, match=r"train.jsonl:2: missing field 'output'"):
        load_records(str(path))
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": 3}\n')
    with pytest.raises(RecordError, match=r"train.jsonl:2: field 'output' must be text"):
        load_records(str(path))
    path.write_text('{"instruction": "a", "output": "b"}\n{not json\n')
    with pytest.raises(RecordError, match=r"train.jsonl:2: not valid JSON"):
        load_records(str(path))


def test_empty_and_wrongly_typed_data_are_clear_errors(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="holds no records"):
        load_records(str(empty))
    prefs = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r"}])
    with pytest.raises(RecordError, match=r"p.jsonl:1: missing field 'instruction'"):
        load_records(str(prefs), kind="instruction")
    with pytest.raises(ValueError, match="expected instruction records, found Preference"):
        load_records("hh-rlhf-harmless", kind="instruction")
    with pytest.raises(ValueError, match="not a builtin data set"):
        load_records("no-such-set")


def test_csv_and_json_sources(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("text,label\ngood,positive\nbad,negative\n")
    assert load_records(str(csv)) == [Classification("good", "positive"), Classification("bad", "negative")]
    js = tmp_path / "d.json"
    js.write_text('[{"instruction": "a", "output": "b"}]')
    assert load_records(str(js)) == [Instruction("a", "b")]


def test_csv_rows_are_named_by_the_line_they_start_on(tmp_path):
    """A quoted cell may span lines: the error names the bad row's own line, and an empty cell is missing."""
    csv = tmp_path / "d.csv"
    csv.write_text('instruction,input,output\n"Two\nlines",,ok\nSay hi,,\n')
    with pytest.raises(RecordError, match=r"d\.csv:4.*output"):
        load_records(str(csv))
    csv.write_text('instruction,input,output\n"Two\nlines",,ok\nSay hi,x,y,extra\n')
    with pytest.raises(RecordError, match=r"d\.csv:4: 4 cells but the header has 3"):
        load_records(str(csv))
    csv.write_text('instruction,input,output\n"Two\nlines",,ok\n')
    assert load_records(str(csv)) == [Instruction("Two\nlines", "ok")]


def test_builtin_sets_load_with_their_licenses():
    assert len(load_records("gsm8k-test")) == 1319
    assert len(load_records("alpaca-seed")) >= 175
    prefs = load_records("hh-rlhf-harmless")
    assert len(prefs) == 2312 and prefs[0].prompt[-1]["role"] == "user" and prefs[0].chosen
    assert all(d.license for d in BUILTIN_DATASETS.values())
    assert "non-commercial" in BUILTIN_DATASETS["financial-phrasebank"].license

"""Atomic writes: the target holds the old content or the new one, never half, and no temporary is left."""

import json

import pytest

from adaptlab.atomic import replacing, write_json, write_jsonl, write_text


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_a_file_is_replaced_whole(tmp_path):
    target = tmp_path / "sub" / "a.json"
    write_json(target, {"x": 1, "ü": [1, 2]})
    write_json(target, {"x": 2})
    assert json.loads(target.read_text(encoding="utf-8")) == {"x": 2}
    write_jsonl(tmp_path / "rows.jsonl", [{"a": 1}, {"a": "é"}])
    assert [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text(encoding="utf-8").splitlines()] == \
        [{"a": 1}, {"a": "é"}]
    assert _leftovers(target.parent) == [] and _leftovers(tmp_path) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError), replacing(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old" and _leftovers(tmp_path) == []


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "artifact"
    with replacing(target, directory=True) as tmp:
        (tmp / "one").write_text("1")
    with replacing(target, directory=True) as tmp:
        (tmp / "two").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["two"]
    with pytest.raises(KeyboardInterrupt), replacing(target, directory=True) as tmp:
        (tmp / "three").write_text("3")
        raise KeyboardInterrupt
    assert sorted(p.name for p in target.iterdir()) == ["two"] and _leftovers(tmp_path) == []

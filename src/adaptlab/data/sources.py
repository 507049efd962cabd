"""Read records from a builtin data set, a local file (JSONL, JSON, CSV, Parquet) or a hub id."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from pathlib import Path

from adaptlab.data.builtin import BUILTIN_DATASETS
from adaptlab.data.records import Record, RecordError, to_record

log = logging.getLogger(__name__)
LOCAL_FORMATS = (".jsonl", ".json", ".csv", ".parquet")


def read_utf8(path: Path) -> str:
    """The file's text; a UTF-8 byte-order mark (as Excel and Notepad write) is dropped, and bytes that are
    not UTF-8 are an error naming the file and line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise RecordError(f"{path}:{line}", f"not UTF-8 text ({e.reason} at byte {e.start}); save the file as "
                                             "UTF-8") from None


def _read_jsonl(path: Path, kind: str | None) -> list[Record]:
    records = []
    for n, line in enumerate(read_utf8(path).split("\n"), start=1):   # not splitlines: JSON strings may hold U+2028
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise RecordError(f"{path}:{n}", f"not valid JSON ({e.msg} at column {e.colno})") from None
        records.append(to_record(row, f"{path}:{n}", kind))
    return records


def _read_json(path: Path, kind: str | None) -> list[Record]:
    try:
        data = json.loads(read_utf8(path))
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}:{e.lineno}", f"not valid JSON ({e.msg})") from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))  # {"data": [...]} layouts
    if not isinstance(data, list):
        raise RecordError(str(path), "a JSON data file must hold a list of objects")
    return [to_record(row, f"{path}: item {i}", kind) for i, row in enumerate(data)]


def _read_csv(path: Path, kind: str | None) -> list[Record]:
    """One pass over the decoded text; a row is named by the line it starts on (quoted cells may span lines).
    Empty cells read as missing, as pandas reads them."""
    reader = csv.DictReader(io.StringIO(read_utf8(path), newline=""))
    records, start = [], reader.line_num + 1
    for row in reader:
        if None in row:
            raise RecordError(f"{path}:{start}", f"{len(row[None]) + len(reader.fieldnames)} cells but the header "
                                                 f"has {len(reader.fieldnames)}")
        records.append(to_record({k: (v if v != "" else None) for k, v in row.items()}, f"{path}:{start}", kind))
        start = reader.line_num + 1
    return records


def _read_parquet(path: Path, kind: str | None) -> list[Record]:
    import datasets

    table = datasets.load_dataset("parquet", data_files=str(path), split="train")
    return [to_record(dict(row), f"{path}: row {i}", kind) for i, row in enumerate(table)]


READERS = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}


def load_records(source: str, kind: str | None = None, split: str = "train", limit: int | None = None) -> list[Record]:
    """Records from `source`: a builtin name, a local file, or a hub data set id (needs a network).

    An empty result is an error, raised here so that no training starts on nothing.
    """
    path = Path(source).expanduser()
    if source in BUILTIN_DATASETS:
        records = BUILTIN_DATASETS[source].records()
    elif path.exists():
        if path.suffix not in READERS:
            raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(LOCAL_FORMATS)}")
        records = READERS[path.suffix](path, kind)
    elif "/" in source and not source.startswith((".", "/")) and not path.suffix:
        import datasets

        table = datasets.load_dataset(source, split=split)
        records = [to_record(dict(row), f"{source}[{split}] row {i}", kind) for i, row in enumerate(table)]
    else:
        raise ValueError(f"data source {source!r} is not a builtin data set ({', '.join(BUILTIN_DATASETS)}), "
                         "an existing file, or a hub id (org/name)")
    if kind is not None:
        from adaptlab.data.records import RECORD_KINDS

        wrong = [r for r in records if not isinstance(r, RECORD_KINDS[kind])]
        if wrong:
            raise ValueError(f"{source}: expected {kind} records, found {type(wrong[0]).__name__}")
    if limit is not None:
        records = records[:limit]
    if not records:
        raise ValueError(f"data source {source!r} holds no records")
    return records


def data_hash(records: list[Record]) -> str:
    """A stable sha256 over the records, for the run manifest."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps(r.__dict__, sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()

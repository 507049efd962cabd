"""Atomic writes: a file or folder is written under a temporary name beside its target and renamed over it.

`os.replace` within one folder is atomic on POSIX and Windows, so a reader (or a run resumed after a crash or
Ctrl-C) sees the old content or the new one, never half of it; a failed write leaves the target as it was and
no temporary behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: str | Path, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path` (a new empty folder when `directory`) to write into; when the block
    ends without error it replaces `path` (an existing folder is removed first), otherwise it is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if directory and path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: object, indent: int | None = 1) -> Path:
    """JSON (UTF-8, values that JSON lacks written with str())."""
    return write_text(path, json.dumps(data, indent=indent, default=str, ensure_ascii=False))


def write_jsonl(path: str | Path, rows: list[dict]) -> Path:
    """One JSON object per line."""
    return write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

"""The one way to read a YAML file into a pydantic model (torch-free): `load_model(path, schema, overrides)`.

Bad YAML is an error naming the file and line; a schema error names each bad field, and for an unknown
key the keys allowed at that place. Every such error is a `YamlFileError` (a ValueError).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class YamlFileError(ValueError):
    """A YAML file (or override) that cannot be read into its schema; the message names file, line or field."""


def _allowed_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names allowed at the place in the schema where an unknown key appeared, in declaration order."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            break
        model = ann
    return list(model.model_fields)


def explain(error: ValidationError, schema: type[BaseModel], source: str, what: str = "recipe") -> str:
    """Readable validation errors: field path, problem, and the allowed keys for unknown ones."""
    lines = [f"invalid {what} {source}:"]
    for e in error.errors():
        path = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"  unknown key {path!r}; allowed here: {', '.join(_allowed_at(schema, e['loc']))}")
        else:
            lines.append(f"  field {path or '(top level)'!r}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def set_key(tree: dict, dotted: str, value: Any) -> None:
    """Set `a.b.c = value` inside a nested dict, creating levels as needed."""
    *parents, last = dotted.split(".")
    node = tree
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise YamlFileError(f"cannot set {dotted!r}: {p!r} is not a section")
    node[last] = value


def read_mapping(path: str | Path, what: str = "file") -> dict:
    """The YAML mapping in `path` (an empty file is {}); a missing file, bad YAML or a non-mapping is an error."""
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise YamlFileError(f"{what} {path}: cannot be read ({e.strerror})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise YamlFileError(f"{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise YamlFileError(f"{path}: a {what} must be a mapping of keys to values, got {type(tree).__name__}")
    return tree


def validate(tree: Any, schema: type[M], source: str, what: str = "recipe") -> M:
    """`tree` validated as `schema`; errors name `source` and each bad field."""
    try:
        return schema.model_validate(tree)
    except ValidationError as e:
        raise YamlFileError(explain(e, schema, source, what)) from None


def load_model(path: str | Path | None, schema: type[M], overrides: Sequence[str] = (), what: str = "recipe") -> M:
    """Read a YAML file (or start from the defaults when `path` is None), apply `key=value` overrides
    (values parsed as YAML, dotted keys for nested sections) and validate as `schema`."""
    tree = read_mapping(path, what) if path else {}
    for item in overrides:
        if "=" not in item:
            raise YamlFileError(f"override {item!r} must look like key=value (e.g. optim.lr=1e-4)")
        key, raw = item.split("=", 1)
        set_key(tree, key.strip(), yaml.safe_load(raw))
    return validate(tree, schema, str(path) if path else "(defaults)", what)

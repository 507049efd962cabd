"""The RAG recipe (YAML): where the documents are, which store, embedder, chunking, k and model.

Every key is optional; command-line options override the file. Relative `docs` paths are read
relative to the YAML file, so a recipe runs from any working directory; `store` paths stay relative
to the working directory, so running an example never writes into the examples folder.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adaptlab.rag.embed import DEFAULT_EMBEDDER
from adaptlab.rag.store import DEFAULT_STORE


class RagConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    docs: Path | None = Field(None, description="folder (or file) of .txt .md .html .pdf documents")
    store: str = Field(DEFAULT_STORE, description="embedded store file path, or postgresql://user:pass@host/db")
    embedder: str = DEFAULT_EMBEDDER
    chunk_size: int = Field(200, gt=0, description="tokens per chunk")
    overlap: int = Field(40, ge=0, description="tokens shared by consecutive chunks")
    k: int = Field(4, gt=0, description="chunks retrieved per question")
    model: str = "smollm2-135m"

    @classmethod
    def load(cls, path: Path | None, **overrides) -> RagConfig:
        """The recipe at `path` (or the defaults), with every non-None override applied."""
        data: dict = {}
        if path is not None:
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except (OSError, yaml.YAMLError) as e:
                raise ValueError(f"cannot read RAG recipe {path}: {e}") from None
            if not isinstance(data, dict):
                raise ValueError(f"{path}: a RAG recipe is a mapping of keys ({', '.join(cls.model_fields)})")
            if data.get("docs") is not None and not Path(data["docs"]).is_absolute():
                data["docs"] = path.parent / data["docs"]
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**data)
        except ValidationError as e:
            where = f"{path}: " if path else ""
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'recipe'}: {err['msg']}" for err in e.errors())
            raise ValueError(f"{where}{problems} (valid keys: {', '.join(cls.model_fields)})") from None

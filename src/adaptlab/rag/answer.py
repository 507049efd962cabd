"""Answer a question from retrieved chunks: numbered sources in the prompt, [n] citations in the answer.

The prompt goes through the model's own chat template; generation is greedy
(`adaptlab.eval.scoring.generate`). Two styles: `cite` (a sentence with [n] citations, for people)
and `short` (a few words, for exact-match scoring on QA sets); `closed_book` sends no sources.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from adaptlab.eval.scoring import generate
from adaptlab.rag.embed import Embedder
from adaptlab.rag.store import Hit, Store, StoreError


@dataclass(frozen=True)
class Style:
    system: str
    with_sources: bool
    max_new_tokens: int
    exemplars: bool = False  # show the answer format with two fixed worked examples first


STYLES: dict[str, Style] = {
    "cite": Style("Answer the question using only the numbered sources. After each claim, cite its source "
                  "as [1], [2], ... If the sources do not contain the answer, say that you do not know.",
                  True, 200),
    "short": Style("Answer the question with a short phrase copied from the sources, without a full sentence.",
                   True, 16, exemplars=True),
    "closed_book": Style("Answer the question with a short phrase, without a full sentence.", False, 16,
                         exemplars=True),
}

# (source text, question, answer): written for this purpose, so no test set leaks into the prompt. Small
# models answer in whole sentences unless shown the format; both QA styles get the same examples, so
# closed-book and RAG differ only in the sources.
EXEMPLARS = [
    (("The Eiffel Tower was built between 1887 and 1889 as the entrance arch for the 1889 World's Fair in "
      "Paris. It was designed by the engineering company of Gustave Eiffel."),
     "Whose company designed the Eiffel Tower?", "Gustave Eiffel"),
    (("Honey bees live in colonies of up to 60,000 workers. The queen lays about 1,500 eggs a day during the "
      "spring."), "How many eggs does the queen lay per day in spring?", "about 1,500"),
]


@dataclass(frozen=True)
class Answer:
    question: str
    text: str
    hits: list[Hit]
    cited: list[int]  # 1-based numbers of the sources the answer cites

    def sources(self) -> list[tuple[int, Hit]]:
        """The numbered sources, cited ones first."""
        order = self.cited + [i for i in range(1, len(self.hits) + 1) if i not in self.cited]
        return [(i, self.hits[i - 1]) for i in order]


def format_sources(hits: list[Hit]) -> str:
    return "\n\n".join(f"[{i}] ({h.chunk.source}) {h.chunk.text}" for i, h in enumerate(hits, start=1))


def _user(question: str, sources: str | None) -> str:
    return f"Sources:\n{sources}\n\nQuestion: {question}" if sources is not None else f"Question: {question}"


def messages(question: str, hits: list[Hit], style: str = "cite") -> list[dict[str, str]]:
    """Chat messages for the question; sources are numbered in retrieval order."""
    s = STYLES[style]
    chat = [{"role": "system", "content": s.system}]
    for text, q, a in EXEMPLARS if s.exemplars else []:
        chat += [{"role": "user", "content": _user(q, f"[1] {text}" if s.with_sources else None)},
                 {"role": "assistant", "content": a}]
    chat.append({"role": "user", "content": _user(question, format_sources(hits) if s.with_sources else None)})
    return chat


def render(tokenizer, chat: list[dict[str, str]]) -> str:
    """The chat rendered as the model's prompt text, ending where the assistant's turn begins."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in chat) + "\n\nAnswer:"


def citations(text: str, n_sources: int) -> list[int]:
    """Source numbers cited as [n] (also [1, 2] and [1][2]) in order of first use; out-of-range ones dropped."""
    seen: dict[int, None] = {}
    for group in re.findall(r"\[(\d+(?:\s*,\s*\d+)*)\]", text):
        for n in re.split(r"\s*,\s*", group):
            if 1 <= int(n) <= n_sources:
                seen[int(n)] = None
    return list(seen)


def retrieve(store: Store, embedder: Embedder, questions: list[str], k: int) -> list[list[Hit]]:
    """Hybrid (dense + BM25, fused by RRF) top-k chunks for each question."""
    if store.info is None:
        raise StoreError("the store is empty: index documents first (adaptlab rag index DIR --store ...)")
    vectors = embedder.encode(questions)
    return [store.search(v, q, k) for v, q in zip(vectors, questions)]


def answer_many(model, tokenizer, questions: list[str], hits: list[list[Hit]], style: str = "cite",
                batch_size: int = 8, progress=None) -> list[Answer]:
    """Generate an answer per question from its hits (ignored for styles without sources)."""
    s = STYLES[style]
    prompts = [render(tokenizer, messages(q, h, style)) for q, h in zip(questions, hits)]
    texts = generate(model, tokenizer, prompts, max_new_tokens=s.max_new_tokens, batch_size=batch_size,
                     progress=progress)
    return [Answer(q, t.strip(), h if s.with_sources else [], citations(t, len(h)) if s.with_sources else [])
            for q, t, h in zip(questions, texts, hits)]


def ask(question: str, store: Store, embedder: Embedder, model, tokenizer, k: int = 4) -> Answer:
    """Retrieve k chunks for `question` and answer it with [n] citations."""
    return answer_many(model, tokenizer, [question], retrieve(store, embedder, [question], k), "cite")[0]

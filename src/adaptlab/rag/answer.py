"""Answer a question from retrieved chunks: numbered sources in the prompt, [n] citations in the answer.

For scoring, `sources_context` is RAG's context builder: the eval harness (`evaluate_task`) asks and scores.

Generation is greedy (`adaptlab.models.generation.generate`). `cite` (sentences with [n] citations, for
people) is a chat turn through the model's own chat template; `short` (a few words, for exact-match
scoring on QA sets) and `closed_book` (the same without sources) are few-shot completions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from adaptlab.eval.kinds import pmi_best
from adaptlab.eval.runner import ContextBuilder
from adaptlab.eval.tasks import Sample
from adaptlab.models.generation import generate
from adaptlab.rag.embed import Embedder
from adaptlab.rag.store import Hit, Store, StoreError
from adaptlab.registry import lookup


@dataclass(frozen=True)
class Style:
    system: str
    with_sources: bool
    max_new_tokens: int
    few_shot: bool = False  # a plain-text completion after worked examples, instead of a chat turn


STYLES: dict[str, Style] = {
    "cite": Style("Answer the question using only the numbered sources. After each claim, cite its source "
                  "as [1], [2], ... If the sources do not contain the answer, say that you do not know.",
                  True, 200),
    "short": Style("Answer each question with the shortest phrase from its sources that answers it.",
                   True, 16, few_shot=True),
    "closed_book": Style("Answer each question with a short phrase.", False, 16, few_shot=True),
}

# (source text, question, answer): written for this purpose, so no test set leaks into the prompt. Both
# QA styles show the same examples, so closed-book and RAG differ only in the sources. QA styles are a
# plain few-shot completion ("Question: ...\nAnswer:", as lm-evaluation-harness and the GPT-3 paper pose
# reading comprehension): on 40 SQuAD questions with their gold paragraph, the builtin 135M model's exact
# match was 12.5% this way and 0% as chat turns, where it restates the question as a sentence.
EXEMPLARS = [
    (("The Eiffel Tower was built between 1887 and 1889 as the entrance arch for the 1889 World's Fair in "
      "Paris. It was designed by the engineering company of Gustave Eiffel."),
     "Whose company designed the Eiffel Tower?", "Gustave Eiffel"),
    (("Honey bees live in colonies of up to 60,000 workers. The queen lays about 1,500 eggs a day during the "
      "spring."), "How many eggs does the queen lay per day in spring?", "about 1,500"),
    (("The Amazon flows for about 6,400 km through Peru, Colombia and Brazil before it reaches the Atlantic "
      "Ocean, carrying more water than any other river."), "Which ocean does the Amazon flow into?",
     "the Atlantic Ocean"),
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


def format_sources(hits: list[Hit], paths: bool = True) -> str:
    """The hits as numbered sources, one per paragraph, each with its file path unless `paths` is False."""
    return "\n\n".join(f"[{i}] " + (f"({h.chunk.source}) " if paths else "") + " ".join(h.chunk.text.split())
                         for i, h in enumerate(hits, start=1))


def _user(question: str, sources: str | None) -> str:
    return f"Sources:\n{sources}\n\nQuestion: {question}" if sources is not None else f"Question: {question}"


def messages(question: str, hits: list[Hit], style: str = "cite") -> list[dict[str, str]]:
    """Chat messages for the question; sources are numbered in retrieval order."""
    s = STYLES[style]
    return [{"role": "system", "content": s.system},
            {"role": "user", "content": _user(question, format_sources(hits) if s.with_sources else None)}]


def few_shot_prompt(question: str, hits: list[Hit], style: str) -> str:
    """Instruction, the worked examples, then the question, each as Sources / Question / Answer lines."""
    s = STYLES[style]

    def block(q: str, sources: str) -> str:
        return _user(q, sources if s.with_sources else None) + "\nAnswer:"

    shots = [f"{block(q, f'[1] {text}')} {a}" for text, q, a in EXEMPLARS]
    return "\n\n".join([s.system, *shots, block(question, format_sources(hits, paths=False))])


def render(tokenizer, chat: list[dict[str, str]]) -> str:
    """The chat rendered as the model's prompt text, ending where the assistant's turn begins."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in chat) + "\n\nAnswer:"


def prompt(tokenizer, question: str, hits: list[Hit], style: str = "cite") -> str:
    """The model's input for one question in the given style."""
    if STYLES[style].few_shot:
        return few_shot_prompt(question, hits, style)
    return render(tokenizer, messages(question, hits, style))


def sources_context(tokenizer, hits: dict[str, list[Hit]], style: str = "short") -> ContextBuilder:
    """RAG's context builder for `evaluate_task`: each sample's question (`meta["question"]`) with its
    retrieved sources (`hits[sample.id]`; none for a style without sources) as the `style` prompt."""
    def build(samples: list[Sample]) -> list[str]:
        return [prompt(tokenizer, s.meta["question"], hits.get(s.id, []), style) for s in samples]
    return build


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
    prompts = [prompt(tokenizer, q, h, style) for q, h in zip(questions, hits)]
    texts = generate(model, tokenizer, prompts, max_new_tokens=s.max_new_tokens, batch_size=batch_size,
                     stop=["\n"] if s.few_shot else None, progress=progress)
    return [Answer(q, t.strip(), h if s.with_sources else [], citations(t, len(h)) if s.with_sources else [])
            for q, t, h in zip(questions, texts, hits)]


def sentences(hits: list[Hit]) -> list[tuple[int, str]]:
    """Every sentence of the hits (markdown headings dropped) with its hit's 1-based source number."""
    out = []
    for n, h in enumerate(hits, start=1):
        text = " ".join(re.sub(r"^\s*#+ .*$", "", h.chunk.text, flags=re.MULTILINE).split())
        out += [(n, s) for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])", text) if len(s.split()) >= 3]
    return out


def answer_extractive(model, tokenizer, questions: list[str], hits: list[list[Hit]], batch_size: int = 16,
                      progress=None) -> list[Answer]:
    """Answer each question with the sentence of its sources that has the highest mutual information
    with it (`eval.kinds.pmi_best`), cited as [n]. Never says more than the sources do, which suits a
    small model that paraphrases wrongly when it generates."""
    cands = [sentences(h) for h in hits]
    ranked = pmi_best(model, tokenizer, questions, [[s for _, s in c] for c in cands], batch_size, progress)
    out = []
    for q, h, c, (best, _) in zip(questions, hits, cands, ranked):
        n, text = c[best] if best is not None else (0, "")
        out.append(Answer(q, f"{text} [{n}]" if n else "", h, [n] if n else []))
    return out


READERS = {
    "extractive": answer_extractive,
    "generative": lambda model, tokenizer, questions, hits: answer_many(model, tokenizer, questions, hits, "cite"),
}


def ask(question: str, store: Store, embedder: Embedder, model, tokenizer, k: int = 4,
        reader: str = "extractive") -> Answer:
    """Retrieve k chunks for `question` and answer it with [n] citations: the best source sentence
    (`extractive`) or a generated answer (`generative`)."""
    read = lookup(READERS, reader, "reader")
    return read(model, tokenizer, [question], retrieve(store, embedder, [question], k))[0]

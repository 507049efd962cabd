"""Prompt assembly, citations, closed-book vs RAG evaluation and the `adaptlab rag` commands."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from adaptlab.rag.answer import EXEMPLARS, Answer, answer_extractive, answer_many, citations, messages, prompt, render, sentences
from adaptlab.rag.chunk import Chunk
from adaptlab.rag.config import RagConfig
from adaptlab.rag.evaluate import evaluate, index_squad, plot, recall_at_k, squad_paragraphs, squad_questions
from adaptlab.rag.store import Hit
from tests.rag_fixtures import HashEmbedder, write_corpus

pytest_plugins = ["tests.rag_fixtures"]  # pg_server, store_url, store, hash_embedder


def hit(source: str, text: str) -> Hit:
    return Hit(Chunk(source, 0, 0, len(text), text), 1.0)


def test_citations_parse_every_form_and_drop_out_of_range():
    assert citations("Paris [2]. Also [1, 3] and [3][9] but not [x].", 3) == [2, 1, 3]
    assert citations("no sources", 3) == []


def test_messages_number_the_sources_in_rank_order():
    hits = [hit("a.md", "first text"), hit("b.md", "second text")]
    chat = messages("what?", hits)
    assert chat[0]["role"] == "system" and "[1]" in chat[0]["content"]
    assert chat[1]["content"] == "Sources:\n[1] (a.md) first text\n\n[2] (b.md) second text\n\nQuestion: what?"
    assert "Sources" not in messages("what?", hits, "closed_book")[1]["content"]


def test_qa_styles_are_few_shot_completions_that_differ_only_in_sources():
    hits = [hit("dir/a.md", "Etna is\n in Sicily.")]
    rag, closed = prompt(None, "Where is Etna?", hits, "short"), prompt(None, "Where is Etna?", hits, "closed_book")
    assert rag.endswith("Sources:\n[1] Etna is in Sicily.\n\nQuestion: Where is Etna?\nAnswer:")
    assert closed.endswith("\n\nQuestion: Where is Etna?\nAnswer:") and "Sources" not in closed
    assert "dir/a.md" not in rag   # paths would be copied into answers
    for text, question, answer in EXEMPLARS:
        assert f"Question: {question}\nAnswer: {answer}" in rag and f"Question: {question}\nAnswer: {answer}" in closed
        assert text in rag and text not in closed


def test_answer_sources_list_cited_first():
    hits = [hit("a", "x"), hit("b", "y"), hit("c", "z")]
    ans = Answer("q", "see [3]", hits, [3])
    assert [n for n, _ in ans.sources()] == [3, 1, 2]


def test_prompt_goes_through_the_chat_template(tiny):
    _, tok = tiny
    text = render(tok, messages("Where is Etna?", [hit("v.txt", "Etna is in Sicily.")]))
    assert "Etna is in Sicily." in text and text.rstrip().endswith("assistant")


def test_answer_many_runs_the_model(tiny):
    model, tok = tiny
    hits = [[hit("v.txt", "Etna is in Sicily.")], [hit("r.txt", "The Danube reaches the Black Sea.")]]
    answers = answer_many(model, tok, ["Where is Etna?", "Where does the Danube end?"], hits, "short")
    assert [a.question for a in answers] == ["Where is Etna?", "Where does the Danube end?"]
    assert all(isinstance(a.text, str) and a.hits for a in answers)


def test_recall_at_k_closed_form():
    retrieved = [["a", "b", "c"], ["x", "y", "z"], ["q", "g"]]
    assert recall_at_k(retrieved, ["b", "z", "w"], 1) == 0
    assert recall_at_k(retrieved, ["b", "z", "w"], 2) == pytest.approx(1 / 3)
    assert recall_at_k(retrieved, ["b", "z", "w"], 3) == pytest.approx(2 / 3)


def test_squad_eval_on_a_slice(store, hash_embedder, tiny, tmp_path):
    model, tok = tiny
    paragraphs = squad_paragraphs(30)
    first = index_squad(store, hash_embedder, paragraphs)
    assert len(first.added) == 30 and index_squad(store, hash_embedder, paragraphs).unchanged == 30
    questions = squad_questions(6, seed=1, sources={s for s, _ in paragraphs})
    assert len(questions) == 6 and all(q.source.startswith("squad:") for q in questions)
    result = evaluate(store, hash_embedder, model, tok, questions, k=2, ks=(1, 5))
    assert set(result.recall) == {"bm25", "dense", "hybrid"}
    for by_k in result.recall.values():
        assert 0 <= by_k[1] <= by_k[2] <= by_k[5] <= 1
    assert result.recall["bm25"][5] > 0.5  # BM25 on the question's own paragraph, among 30
    assert set(result.scores) == {"closed_book", "rag", "extractive"} and len(result.rows) == 6
    for row in result.rows:   # the extractive answer is a sentence of a retrieved source
        assert not row["extractive"] or any(row["extractive"] in text for s, text in paragraphs if s in row["retrieved"])
    png = plot(result, tmp_path / "plot.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_recipe_resolves_docs_next_to_the_file_and_names_bad_keys(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("docs: docs\nk: 3\n")
    cfg = RagConfig.load(recipe, k=5)
    assert cfg.docs == tmp_path / "docs" and cfg.k == 5 and cfg.store == "adaptlab-rag.db"
    recipe.write_text("docs: docs\nchunk_sise: 3\n")
    with pytest.raises(ValueError, match="chunk_sise.*allowed here: docs, store"):
        RagConfig.load(recipe)


# --- the CLI, with the hash embedder and the tiny model standing in for the real ones ---

@pytest.fixture
def cli(monkeypatch, tiny):
    import adaptlab.models
    import adaptlab.rag.embed

    monkeypatch.setattr(adaptlab.rag.embed, "Embedder", lambda name="hash-bow", **kw: HashEmbedder(name=name))
    monkeypatch.setattr(adaptlab.models, "load_model",
                        lambda name, **kw: type("LM", (), {"model": tiny[0], "tokenizer": tiny[1]}))
    from adaptlab.cli import app

    runner = CliRunner()

    def invoke(*args):
        result = runner.invoke(app, list(args))
        result.text = " ".join(result.output.split())  # rich wraps long lines; compare words
        return result

    return invoke


def test_cli_index_then_ask(cli, store_url, tmp_path):
    write_corpus(tmp_path / "docs")
    res = cli("rag", "index", str(tmp_path / "docs"), "--store", store_url)
    assert res.exit_code == 0, res.output
    assert "4 added" in res.text and "skipped 3 file(s)" in res.text and "image.png" in res.text
    res = cli("rag", "index", str(tmp_path / "docs"), "--store", store_url)
    assert "4 unchanged" in res.text and "0 chunks embedded" in res.text
    res = cli("rag", "ask", "Where is Mount Etna?", "--store", store_url, "--k", "2")
    assert res.exit_code == 0, res.output
    assert "sources" in res.text and "[1]" in res.text and "page.html" in res.text


def test_cli_errors_are_one_clear_line(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    res = cli("rag", "index", str(tmp_path / "empty"), "--store", str(tmp_path / "s.db"))
    assert res.exit_code == 2 and "no readable documents" in res.text
    res = cli("rag", "ask", "q", "--store", str(tmp_path / "new.db"))
    assert res.exit_code == 2 and "is empty: index documents first" in res.text
    res = cli("rag", "index", str(tmp_path), "--store", f"postgresql://u:pw@/x?host={tmp_path}&connect_timeout=2")
    assert res.exit_code == 2 and "cannot connect" in res.text and "pw" not in res.text


def test_cli_eval_writes_table_json_and_plot(cli, tmp_path, monkeypatch):
    import adaptlab.rag.evaluate as ev

    paragraphs, real_questions = ev.squad_paragraphs(20), ev.squad_questions
    monkeypatch.setattr(ev, "squad_paragraphs", lambda limit=None: paragraphs)
    monkeypatch.setattr(ev, "squad_questions", lambda limit=None, seed=0, sources=None:
                        real_questions(limit, seed, {s for s, _ in paragraphs}))
    res = cli("rag", "eval", "--limit", "4", "--store", str(tmp_path / "sq.db"), "--out", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["n_questions"] == 4 and set(data["scores"]) == {"closed_book", "rag", "extractive"}
    assert (tmp_path / "out" / "rag-eval.png").exists() and "closed_book" in res.text and "hybrid" in res.text


# --- extractive answering: the source sentence the question makes most likely ---

def test_sentences_drop_headings_and_keep_source_numbers():
    hits = [hit("a.md", "# Title\n\n## Holidays\n\nEvery employee has 27 days. Requests go to the manager."),
            hit("b.txt", "Founded in 1987 by Jonas. Short.")]
    assert sentences(hits) == [(1, "Every employee has 27 days."), (1, "Requests go to the manager."),
                               (2, "Founded in 1987 by Jonas.")]


def test_pmi_best_averages_both_directions_of_pointwise_mutual_information(tiny):
    from adaptlab.eval.kinds import pmi_best
    from adaptlab.models.generation import loglikelihoods

    model, tok = tiny
    q, cands = "how many days?", ["the grove has six trees", "paid holiday is 27 days", "x"]
    [(best, pmi)] = pmi_best(model, tok, [q], [cands])

    def ll(context: str, text: str) -> float:
        return loglikelihoods(model, tok, [(context, f" {text}")])[0][0]

    want = [(ll(f"Question: {q}\nAnswer:", c) - ll("Answer:", c) + ll(f"Text: {c}\nQuestion:", q) - ll("Question:", q)) / 2
            for c in cands]
    assert pmi == pytest.approx(want, abs=1e-4)
    assert best == max(range(3), key=want.__getitem__)
    assert pmi_best(model, tok, ["q"], [[]]) == [(None, [])]


def test_extractive_answer_cites_the_sentence_it_returns(tiny):
    model, tok = tiny
    hits = [hit("a.md", "Etna is a volcano in Sicily. It erupts often."), hit("b.md", "The Danube ends in the Black Sea.")]
    [ans] = answer_extractive(model, tok, ["Where is Etna?"], [hits])
    n, text = next((n, s) for n, s in sentences(hits) if ans.text == f"{s} [{n}]")
    assert ans.cited == [n] and ans.hits == hits and text in hits[n - 1].chunk.text


@pytest.mark.slow
def test_readme_example_answers_right_with_the_builtin_model(tmp_path):
    """The README's `rag index examples/docs` + `rag ask` with the builtin model and embedder."""
    from pathlib import Path

    from adaptlab.models import load_model
    from adaptlab.rag.answer import ask
    from adaptlab.rag.config import RagConfig
    from adaptlab.rag.embed import Embedder
    from adaptlab.rag.index import folder_documents, sync
    from adaptlab.rag.store import open_store

    cfg = RagConfig()
    docs, _, scope = folder_documents(Path(__file__).parent.parent / "examples" / "docs")
    store, emb = open_store(str(tmp_path / "docs.db")), Embedder(cfg.embedder)
    try:
        sync(store, emb, docs, scope, cfg.chunk_size, cfg.overlap)
        lm = load_model(cfg.model)
        ans = ask("How many days of paid holiday do employees get?", store, emb, lm.model, lm.tokenizer, cfg.k)
    finally:
        store.close()
    assert ans.text.startswith("Every full-time employee has 27 days of paid holiday per year")
    assert len(ans.cited) == 1 and ans.hits[ans.cited[0] - 1].chunk.source.endswith("handbook.md")

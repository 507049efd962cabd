"""The feedback store and app: idempotent votes, export, stats, and 4xx (never 500) for forged or bad requests."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from adaptlab.feedback.app import check_bind, create_app, csrf_token
from adaptlab.feedback.store import FeedbackStore, Vote, VoteConflict, export_preferences


@pytest.fixture
def store(tmp_path):
    s = FeedbackStore(tmp_path / "fb.db")
    for i in range(3):
        s.add_pair(i, f"prompt {i}", (f"first {i}", f"second {i}"), ("p1", "p2"), swapped=i == 1)
    yield s
    s.close()


def _client(store, **kw) -> TestClient:
    return TestClient(create_app(store, total=3, **kw), raise_server_exceptions=False)


def _vote(client, store, body: dict, **headers):
    token = csrf_token(store.secret(), body.get("annotator", ""))
    return client.post("/api/vote", json=body, headers={"X-CSRF-Token": token, **headers})


def test_store_is_wal_and_votes_are_idempotent(store):
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    vote = Vote(pair_id=1, annotator="ann", choice="A", rating_a=6)
    first, again = store.vote(vote), store.vote(vote)
    assert first[1] is True and again == (first[0], False)
    with pytest.raises(VoteConflict):
        store.vote(Vote(pair_id=1, annotator="ann", choice="B"))
    assert len(store.preferences()) == 1


def test_swapped_pair_shows_the_second_policy_first_and_export_maps_sides(store, tmp_path):
    shown = store.pair(2)
    assert (shown.answer_a, shown.policy_a, shown.swapped) == ("second 1", "p2", True)
    store.vote(Vote(pair_id=2, annotator="ann", choice="B", rating_a=2, rating_b=7, comment="ok"))
    store.vote(Vote(pair_id=1, annotator="ann", choice="tie"))
    assert export_preferences(store, tmp_path / "p.jsonl") == 1
    (row,) = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert (row["chosen"], row["rejected"], row["policy_chosen"]) == ("first 1", "second 1", "p1")
    assert (row["rating_chosen"], row["rating_rejected"], row["comment"]) == (7, 2, "ok")


def test_export_of_zero_votes_is_an_error_not_an_empty_file(store, tmp_path):
    store.vote(Vote(pair_id=1, annotator="ann", choice="both_bad"))
    with pytest.raises(ValueError, match="no decided votes"):
        export_preferences(store, tmp_path / "p.jsonl")
    assert not (tmp_path / "p.jsonl").exists()


def test_stats_agreement_and_tie_rate(store):
    for pair, a, b in [(1, "A", "A"), (2, "A", "B"), (3, "tie", "tie")]:
        store.vote(Vote(pair_id=pair, annotator="x", choice=a))
        store.vote(Vote(pair_id=pair, annotator="y", choice=b))
    store.vote(Vote(pair_id=1, annotator="z", choice="B"))
    stats = store.stats()
    assert stats.votes["x"] == {"A": 2, "B": 0, "tie": 1, "both_bad": 0}
    assert stats.overlapping_pairs == 3
    # pair 1: x=y, x!=z, y!=z -> 1/3; pair 2: 0/1; pair 3: 1/1  => 2/5
    assert stats.agreement == pytest.approx(2 / 5)
    assert stats.tie_rate == pytest.approx(2 / 7)


def test_vote_over_http_is_idempotent_and_conflicts_are_409(store):
    client = _client(store)
    body = {"pair_id": 1, "annotator": "ann", "choice": "A", "rating_a": 5, "comment": "good"}
    first, second = _vote(client, store, body), _vote(client, store, body)
    assert first.status_code == second.status_code == 200
    assert second.json() == {"vote_id": first.json()["vote_id"], "recorded": False}
    assert _vote(client, store, {**body, "choice": "B"}).status_code == 409
    nxt = client.get("/api/next", params={"annotator": "ann"}).json()
    assert nxt["pair"]["id"] == 2 and nxt["progress"] == {"voted": 1, "ready": 3, "total": 3}


@pytest.mark.parametrize("body, headers, status", [
    ({"pair_id": 1, "annotator": "ann", "choice": "A"}, {"X-CSRF-Token": "forged"}, 403),
    ({"pair_id": 1, "annotator": "ann", "choice": "A"}, {"Origin": "http://evil.example"}, 403),
    ({"pair_id": 99, "annotator": "ann", "choice": "A"}, {}, 404),
    ({"pair_id": 1, "annotator": "ann", "choice": "C"}, {}, 422),
    ({"pair_id": 1, "annotator": "ann", "choice": "A", "rating_a": 8}, {}, 422),
    ({"pair_id": "x", "annotator": "ann", "choice": "A"}, {}, 422),
    ({"pair_id": 1, "annotator": "<script>", "choice": "A"}, {}, 422),
    ({"pair_id": 1, "annotator": "ann", "choice": "A", "comment": "x" * 5000}, {}, 422),
    ({"annotator": "ann"}, {}, 422),
])
def test_forged_or_malformed_votes_get_4xx(store, body, headers, status):
    assert _vote(_client(store), store, body, **headers).status_code == status
    assert store.preferences() == []


def test_non_json_bodies_and_bad_queries_get_4xx(store):
    client = _client(store)
    token = {"X-CSRF-Token": csrf_token(store.secret(), "ann")}
    assert client.post("/api/vote", content=b"{not json", headers={**token, "Content-Type": "application/json"}).status_code == 422
    form = client.post("/api/vote", data={"pair_id": "1", "annotator": "ann", "choice": "A"}, headers=token)
    assert 400 <= form.status_code < 500
    assert client.get("/api/next").status_code == 422
    assert client.get("/api/next", params={"annotator": "a b/c"}).status_code == 400
    assert client.get("/", params={"annotator": "\x00"}).status_code == 400
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400   # DNS rebinding on loopback
    assert store.preferences() == []


def test_api_key_guards_every_page_but_login(store):
    client = _client(store, api_key="s3cret", loopback=False)
    assert client.get("/", follow_redirects=False).status_code == 303
    assert client.get("/api/next", params={"annotator": "ann"}).status_code == 401
    assert client.post("/login", json={"key": "wrong"}).status_code == 403
    assert client.get("/healthz").status_code == 200
    assert client.post("/login", json={"key": "s3cret"}).status_code == 200   # sets the HttpOnly cookie
    assert client.get("/api/next", params={"annotator": "ann"}).status_code == 200
    bearer = _client(store, api_key="s3cret", loopback=False)
    assert bearer.get("/api/next", params={"annotator": "ann"}, headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_binding_beyond_loopback_needs_a_key():
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    with pytest.raises(ValueError, match="api-key"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "key")


def test_vote_page_embeds_the_csrf_token_and_shortcuts(store):
    page = _client(store).get("/", params={"annotator": "ann"}).text
    assert csrf_token(store.secret(), "ann") in page and "<kbd>1</kbd>" in page


def test_prompt_files_read_like_other_data_files(tmp_path):
    from adaptlab.data.records import RecordError
    from adaptlab.feedback.pairs import read_prompts

    (tmp_path / "p.csv").write_text('prompt\n"Two\nlines"\nhi\n')
    assert read_prompts(tmp_path / "p.csv") == ["Two\nlines", "hi"]
    (tmp_path / "p.txt").write_text("a\n\nb\n")
    assert read_prompts(tmp_path / "p.txt") == ["a", "b"]
    (tmp_path / "bad.jsonl").write_text('{"prompt": "hi"}\n{"prompt": ""}\n')
    with pytest.raises(RecordError, match=r"bad\.jsonl:2: field 'prompt' is empty"):
        read_prompts(tmp_path / "bad.jsonl")
    (tmp_path / "chat.jsonl").write_text('{"prompt": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(ValueError, match="text 'prompt'"):
        read_prompts(tmp_path / "chat.jsonl")

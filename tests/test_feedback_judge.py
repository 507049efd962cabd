"""The AI judge: verdict parsing, both-order position-bias cancellation, resume, HTTP retries, local model."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from adaptlab.feedback.backends import HttpJudge, JudgeUnavailable, LocalJudge, parse_verdict
from adaptlab.feedback.judge import (
    CRITERIA,
    JUDGE_PROMPT,
    Item,
    JudgeReward,
    combine,
    criteria_text,
    judge_pairs,
    preferences,
    read_pairs,
    report,
)
from tests.conftest import write_jsonl


class Scripted:
    """A judge that prefers the answer containing 'good', or always says `slot` (a position-biased judge)."""
    name = "scripted"

    def __init__(self, slot: str | None = None):
        self.slot, self.asked = slot, 0

    def verdicts(self, prompts):
        self.asked += len(prompts)
        out = []
        for p in prompts:
            a = p.split("[Answer A]\n")[1].split("\n\n[Answer B]")[0]
            out.append(self.slot or ("A" if "good" in a else "B"))
        return out


ITEMS = [Item("q1", "good answer", "bad answer", "x"), Item("q2", "meh", "good one", "x"), Item("q3", "good", "ok", None)]


@pytest.mark.parametrize("reply, verdict", [("A", "A"), (" b.", "B"), ("**A**", "A"), ("[[B]]", "B"), ("C", "tie"),
                                            ("Tie", "tie"), ("Answer A", "invalid"), ("", "invalid"), ("AB", "invalid")])
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == verdict


def test_combine_counts_order_disagreement_as_a_tie():
    assert combine("A", "B") == ("x", False)      # x first, then x second: consistent
    assert combine("B", "A") == ("y", False)
    assert combine("A", "A") == ("tie", True)     # the judge followed the slot
    assert combine("A", "invalid") == ("tie", False)
    assert combine("tie", "tie") == ("tie", False)


def test_both_orders_cancel_a_position_biased_judge(tmp_path):
    records = judge_pairs(ITEMS, Scripted(slot="A"), CRITERIA["helpful"], tmp_path / "s.jsonl")
    r = report(records)
    assert (r.decided, r.ties, r.flip_rate) == (0, 3, 1.0)
    assert preferences(records, "helpful") == []


def test_report_agreement_and_preferences(tmp_path):
    records = judge_pairs(ITEMS, Scripted(), "crit", tmp_path / "s.jsonl", batch=2)
    r = report(records)
    assert [x["verdict"] for x in records] == ["x", "y", "x"]
    assert (r.pairs, r.decided, r.human_pairs, r.agreement, r.flip_rate) == (3, 3, 2, 0.5, 0.0)
    rows = preferences(records, "helpful")
    assert rows[1] == {"prompt": "q2", "chosen": "good one", "rejected": "meh", "annotator": "judge:scripted",
                       "criteria": "helpful", "p_chosen": 1.0}


def test_resume_asks_nothing_twice_and_survives_a_torn_line(tmp_path):
    state = tmp_path / "s.jsonl"
    judge_pairs(ITEMS[:2], Scripted(), "crit", state)
    with state.open("a") as f:
        f.write('{"key": "cut sh')              # a crash mid-write
    again = Scripted()
    records = judge_pairs(ITEMS, again, "crit", state)
    assert again.asked == 2 and len(records) == 3   # only q3, in both orders


def _endpoint(replies: list):
    """A local OpenAI-compatible server answering `replies` in turn (an int is an HTTP error status)."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append((self.path, self.headers.get("Authorization"),
                         json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            reply = replies.pop(0)
            if isinstance(reply, int):
                self.send_response(reply)
                self.end_headers()
                return
            body = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def test_http_judge_retries_then_parses(monkeypatch):
    monkeypatch.setenv("ADAPTLAB_JUDGE_KEY", "k")
    server, seen = _endpoint([503, 429, "A", "I cannot decide", "B"])
    try:
        judge = HttpJudge(f"http://127.0.0.1:{server.server_port}/v1", model="m", backoff=0.01)
        assert judge.verdicts(["p1", "p2", "p3"]) == ["A", "invalid", "B"]
    finally:
        server.shutdown()
    assert len(seen) == 5 and seen[0][0] == "/v1/chat/completions" and seen[0][1] == "Bearer k"
    assert seen[0][2]["messages"] == [{"role": "user", "content": "p1"}] and seen[0][2]["temperature"] == 0


def test_unreachable_endpoint_stops_with_verdicts_saved(tmp_path):
    server, _ = _endpoint(["A", "B"])          # answers the first pair's two orders, then goes away
    port = server.server_port
    judge = HttpJudge(f"http://127.0.0.1:{port}", retries=2, backoff=0.01, timeout=2)
    state = tmp_path / "s.jsonl"
    original = judge.verdicts

    def verdicts_then_die(prompts):
        out = original(prompts)
        server.shutdown()
        server.server_close()
        return out

    judge.verdicts = verdicts_then_die
    judge_pairs(ITEMS[:1], judge, "crit", state, batch=1)
    judge.verdicts = original
    with pytest.raises(JudgeUnavailable, match="3 attempts"):
        judge_pairs(ITEMS, judge, "crit", state, batch=1)
    saved = [json.loads(line) for line in state.read_text().splitlines()]
    assert [s["prompt"] for s in saved] == ["q1"] and (saved[0]["first"], saved[0]["second"]) == ("A", "B")


def test_local_judge_scores_both_letters(tiny):
    model, tokenizer = tiny
    judge = LocalJudge(model, tokenizer)
    prompts = [JUDGE_PROMPT.format(criteria="c", prompt="q", a="x", b="y"), "short"]
    verdicts = judge.verdicts(prompts)
    assert set(verdicts) <= {"A", "B"} and len(verdicts) == 2
    # the same prompts through the shared log-likelihood scorer give the same choice
    from adaptlab.models.generation import loglikelihoods

    ctx = judge._chat(prompts[0])
    (la, _), (lb, _) = loglikelihoods(model, tokenizer, [(ctx, "A"), (ctx, "B")])
    assert verdicts[0] == ("A" if la >= lb else "B")


def test_judge_as_reward_function():
    reward = JudgeReward(Scripted(), "crit", {"q": "plain reference", "r": "a good reference"})
    assert reward(["q", "r", "q"], ["a good answer", "worse", "worse"]) == [1.0, 0.0, 0.5]
    with pytest.raises(KeyError, match="no reference"):
        reward(["other"], ["x"])


def test_read_pairs_and_criteria(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "c", "rejected": "r"}, {"prompt": "q", "a": "1", "b": "2"}])
    assert read_pairs(path) == [Item("q", "c", "r", "x"), Item("q", "1", "2", None)]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "q", "chosen": "c"}])
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_pairs(bad)
    assert criteria_text("harmless") == CRITERIA["harmless"]
    (tmp_path / "c.txt").write_text("Be concise.\n")
    assert criteria_text(str(tmp_path / "c.txt")) == "Be concise."
    with pytest.raises(ValueError, match="helpful"):
        criteria_text("funny")


def test_judge_is_a_reward_kind_for_online_rl(tiny_dir, tmp_path):
    from adaptlab.train.rewards import load_reward

    refs = write_jsonl(tmp_path / "refs.jsonl", [{"prompt": "q", "reference": "a reference answer"}])
    reward = load_reward(f"judge:{tiny_dir},{refs},harmless")
    scores = reward(["q", "q"], ["first answer", "second answer"])
    assert len(scores) == 2 and set(scores) <= {0.0, 0.5, 1.0}
    with pytest.raises(ValueError, match="judge:JUDGE,REFERENCES"):
        load_reward(f"judge:{tiny_dir}")


def test_builtin_preference_set_stands_in_for_human_votes():
    from adaptlab.feedback.judge import load_pairs

    items = load_pairs("hh-rlhf-harmless", limit=3)
    assert len(items) == 3 and all(it.human == "x" for it in items)
    assert items[0].prompt.startswith("User: ") and "\n\nAssistant: " in items[0].prompt

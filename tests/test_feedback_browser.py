"""The feedback page in a real headless Chromium, against the server started as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.browser import page  # noqa: F401
from tests.conftest import write_jsonl

CHOICE_KEYS = {"A": "1", "B": "2", "tie": "3", "both_bad": "4"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`adaptlab feedback serve` on the tiny model, as a subprocess on a free loopback port."""

    def __init__(self, tmp_path: Path, tiny_dir: Path, n_prompts: int = 18):
        self.port, self.db = _free_port(), tmp_path / "votes.db"
        self.prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Question {i}: say something."}
                                                                 for i in range(n_prompts)])
        self.tiny_dir, self.n, self.proc = tiny_dir, n_prompts, None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready: int = 1) -> None:
        """Start the server and wait until `ready` pairs are generated."""
        cmd = [sys.executable, "-m", "adaptlab.cli", "feedback", "serve", "--prompts", str(self.prompts),
               "--policy", str(self.tiny_dir), "--db", str(self.db), "--port", str(self.port), "--max-new-tokens", "12"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while time.time() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read().decode()
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if json.loads(r.read())["ready"] >= ready:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise TimeoutError("feedback server did not get ready")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def export(self, out: Path, annotator: str) -> list[dict]:
        subprocess.run([sys.executable, "-m", "adaptlab.cli", "feedback", "export", "--db", str(self.db), "--out", str(out)],
                       check=True, capture_output=True, env={**os.environ, "COLUMNS": "200"})
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        return [r for r in rows if r["annotator"] == annotator]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_dir):
    """One server for the module (each test votes as its own annotator); the second test restarts it."""
    srv = Server(tmp_path_factory.mktemp("feedback"), tiny_dir)
    srv.start(ready=srv.n)
    yield srv
    if srv.proc.poll() is None:
        srv.kill()


def _enter(page, server, annotator):  # noqa: F811
    page.goto(server.url + "/")
    page.fill("input[name=annotator]", annotator)
    page.keyboard.press("Enter")
    page.wait_for_selector("#main:not([hidden])")


def _shown(page) -> dict:  # noqa: F811
    return {"pair": int(page.get_attribute("#main", "data-pair")), "prompt": page.text_content("#prompt"),
            "a": page.text_content("#answer_a"), "b": page.text_content("#answer_b")}


def _vote(page, choice: str, mouse: bool, rating_a: str = "", comment: str = "") -> None:  # noqa: F811
    """Vote on the pair shown: by mouse (click the choice, click Submit) or keyboard (1-4, Enter)."""
    if rating_a:
        page.select_option("#rating_a", rating_a)
    if comment:
        page.fill("#comment", comment)
    if mouse:
        page.click(f"button[data-choice={choice}]")
        page.click("#submit")
    else:
        page.click("#prompt")          # focus leaves the form fields, so the shortcuts apply
        page.keyboard.press(CHOICE_KEYS[choice])
        page.keyboard.press("Enter")


def _next_pair_shown(page) -> None:  # noqa: F811
    """Wait until the page shows a pair this annotator has not voted on yet."""
    page.wait_for_function("!window.acked.some(a => String(a.pair_id) === document.getElementById('main').dataset.pair)")


def _acked(page) -> list[dict]:  # noqa: F811
    return page.evaluate("window.acked")


def test_ten_judgments_by_keyboard_and_mouse_export_row_by_row(page, server, tmp_path):  # noqa: F811
    _enter(page, server, "alice")
    choices = ["A", "B", "tie", "A", "both_bad", "B", "B", "A", "tie", "A"]
    shown = []
    for i, choice in enumerate(choices):
        seen = _shown(page)
        shown.append(seen)
        _vote(page, choice, mouse=i % 2 == 1, rating_a=str(1 + i % 7) if i % 3 == 0 else "",
              comment=f"note {i}" if i % 4 == 0 else "")
        page.wait_for_function(f"window.acked.length === {i + 1}")
        if i < len(choices) - 1:
            page.wait_for_function(f"document.getElementById('main').dataset.pair !== '{seen['pair']}'")
    page.wait_for_function("document.getElementById('progress').textContent.startsWith('10 voted')")
    rows = server.export(tmp_path / "prefs.jsonl", "alice")
    decided = [(s, c, i) for i, (s, c) in enumerate(zip(shown, choices)) if c in ("A", "B")]
    assert len(rows) == len(decided) == 7
    for row, (seen, choice, i) in zip(rows, decided):
        win, lose = ("a", "b") if choice == "A" else ("b", "a")
        assert (row["prompt"], row["chosen"], row["rejected"]) == (seen["prompt"], seen[win], seen[lose])
        assert row["annotator"] == "alice" and row["pair_id"] == seen["pair"]
        assert row["comment"] == (f"note {i}" if i % 4 == 0 else "")
        rating_a = 1 + i % 7 if i % 3 == 0 else None
        assert row["rating_chosen" if choice == "A" else "rating_rejected"] == rating_a
    assert len({s["pair"] for s in shown}) == 10


def test_sigkill_mid_session_keeps_every_acknowledged_vote_once(page, server, tmp_path):  # noqa: F811
    _enter(page, server, "bob")
    for i in range(4):
        seen = _shown(page)
        _vote(page, "AB"[i % 2], mouse=i % 2 == 0)
        page.wait_for_function(f"window.acked.length === {i + 1}")
        page.wait_for_function(f"document.getElementById('main').dataset.pair !== '{seen['pair']}'")
    _vote(page, "B", mouse=False)        # in flight while the server dies
    server.kill()
    server.start()
    page.wait_for_function("window.acked.length === 5", timeout=60_000)
    for i in range(2):
        _next_pair_shown(page)
        _vote(page, "A", mouse=True)
        page.wait_for_function(f"window.acked.length === {6 + i}")
    acked = _acked(page)
    # a retried request (the browser replaying every acknowledged vote) records nothing new
    replay = page.evaluate("""async votes => Promise.all(votes.map(async v => (await fetch('/api/vote', {
        method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': JSON.parse(
        document.getElementById('cfg').textContent).csrf}, body: JSON.stringify({pair_id: v.pair_id,
        annotator: 'bob', choice: v.choice})})).json()))""", acked)
    assert [r["recorded"] for r in replay] == [False] * 7
    rows = server.export(tmp_path / "prefs.jsonl", "bob")
    assert len(rows) == len(acked) == 7
    assert sorted((r["pair_id"], r["vote_id"]) for r in rows) == sorted((a["pair_id"], a["vote_id"]) for a in acked)
    assert len({r["pair_id"] for r in rows}) == 7

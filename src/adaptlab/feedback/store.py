"""Pairs and votes in SQLite (WAL mode, one committed transaction per vote), and what is read back out.

A pair is one prompt with two answers already generated (sides randomised; `swapped` records whether
the first policy's answer is shown on the right). Every annotator may vote once on every pair:
`UNIQUE(pair_id, annotator)` makes a retried or double-clicked vote a no-op that returns the vote
already stored, so a vote acknowledged to the browser is there exactly once, even across a crash.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from adaptlab import atomic
from adaptlab.feedback.agreement import cohen_kappa

CHOICES = ("A", "B", "tie", "both_bad")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairs (
  id INTEGER PRIMARY KEY, prompt_index INTEGER NOT NULL UNIQUE, prompt TEXT NOT NULL,
  answer_a TEXT NOT NULL, answer_b TEXT NOT NULL, policy_a TEXT NOT NULL, policy_b TEXT NOT NULL,
  swapped INTEGER NOT NULL, created REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0));
CREATE TABLE IF NOT EXISTS votes (
  id INTEGER PRIMARY KEY, pair_id INTEGER NOT NULL REFERENCES pairs(id), annotator TEXT NOT NULL,
  choice TEXT NOT NULL, rating_a INTEGER, rating_b INTEGER, comment TEXT NOT NULL DEFAULT '',
  created REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0), UNIQUE(pair_id, annotator));
"""


@dataclass(frozen=True)
class Pair:
    id: int
    prompt_index: int
    prompt: str
    answer_a: str
    answer_b: str
    policy_a: str
    policy_b: str
    swapped: bool


@dataclass(frozen=True)
class Vote:
    pair_id: int
    annotator: str
    choice: str
    rating_a: int | None = None
    rating_b: int | None = None
    comment: str = ""


@dataclass(frozen=True)
class Stats:
    votes: dict[str, dict[str, int]]      # annotator -> choice -> count
    tie_rate: float                       # (tie + both bad) / votes
    overlapping_pairs: int                # pairs voted on by two or more annotators
    agreement: float | None               # share of annotator pairs on those pairs that chose the same
    kappa: float | None = None            # Cohen's kappa over the same annotator pairs (feedback/agreement.py)


class VoteConflict(ValueError):
    """The annotator already voted differently on this pair."""


class FeedbackStore:
    """A thread-safe handle on the feedback database at `path`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def secret(self) -> bytes:
        """A random key made once per database (signs CSRF tokens, so they survive a restart)."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('secret', ?)", (secrets.token_hex(32),))
            return bytes.fromhex(self._db.execute("SELECT value FROM meta WHERE key='secret'").fetchone()[0])

    def add_pair(self, prompt_index: int, prompt: str, answers: tuple[str, str], policies: tuple[str, str],
                 swapped: bool) -> None:
        """Store one generated pair; answers/policies are (first policy, second policy), shown swapped or not."""
        a, b = (1, 0) if swapped else (0, 1)
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO pairs (prompt_index, prompt, answer_a, answer_b, policy_a, "
                             "policy_b, swapped) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (prompt_index, prompt, answers[a], answers[b], policies[a], policies[b], int(swapped)))

    def done_prompts(self) -> set[int]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT prompt_index FROM pairs")}

    def pair(self, pair_id: int) -> Pair | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM pairs WHERE id=?", (pair_id,)).fetchone()
        return _pair(row) if row else None

    def next_pair(self, annotator: str) -> Pair | None:
        """The oldest pair this annotator has not voted on."""
        with self._lock:
            row = self._db.execute("SELECT * FROM pairs WHERE id NOT IN (SELECT pair_id FROM votes WHERE annotator=?) "
                                   "ORDER BY id LIMIT 1", (annotator,)).fetchone()
        return _pair(row) if row else None

    def progress(self, annotator: str) -> dict[str, int]:
        with self._lock:
            voted = self._db.execute("SELECT count(*) FROM votes WHERE annotator=?", (annotator,)).fetchone()[0]
            ready = self._db.execute("SELECT count(*) FROM pairs").fetchone()[0]
        return {"voted": voted, "ready": ready}

    def vote(self, vote: Vote) -> tuple[int, bool]:
        """Record a vote in its own committed transaction; returns (vote id, newly recorded).
        The same vote again returns the stored one; a different choice on a voted pair is a VoteConflict."""
        with self._lock:
            cur = self._db.execute("INSERT OR IGNORE INTO votes (pair_id, annotator, choice, rating_a, rating_b, comment) "
                                   "VALUES (?, ?, ?, ?, ?, ?)", (vote.pair_id, vote.annotator, vote.choice, vote.rating_a,
                                                                 vote.rating_b, vote.comment))
            row = self._db.execute("SELECT id, choice FROM votes WHERE pair_id=? AND annotator=?",
                                   (vote.pair_id, vote.annotator)).fetchone()
        if row["choice"] != vote.choice:
            raise VoteConflict(f"{vote.annotator} already voted {row['choice']!r} on pair {vote.pair_id}")
        return row["id"], cur.rowcount == 1

    def _votes(self) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute("SELECT v.*, p.prompt, p.answer_a, p.answer_b, p.policy_a, p.policy_b, p.swapped "
                                    "FROM votes v JOIN pairs p ON p.id = v.pair_id ORDER BY v.id").fetchall()

    def preferences(self) -> list[dict]:
        """Decided votes as preference rows {prompt, chosen, rejected, ...}; ties and both-bad are left out."""
        out = []
        for v in self._votes():
            if v["choice"] not in ("A", "B"):
                continue
            win, lose = ("a", "b") if v["choice"] == "A" else ("b", "a")
            out.append({"prompt": v["prompt"], "chosen": v[f"answer_{win}"], "rejected": v[f"answer_{lose}"],
                        "annotator": v["annotator"], "pair_id": v["pair_id"], "vote_id": v["id"],
                        "policy_chosen": v[f"policy_{win}"], "policy_rejected": v[f"policy_{lose}"],
                        "rating_chosen": v[f"rating_{win}"], "rating_rejected": v[f"rating_{lose}"],
                        "comment": v["comment"]})
        return out

    def stats(self) -> Stats:
        """Votes per annotator and choice, the tie rate, and percent agreement and Cohen's kappa where
        annotators overlap (every two annotators of a pair are one rated item)."""
        rows = self._votes()
        per: dict[str, dict[str, int]] = {}
        by_pair: dict[int, list[tuple[str, str]]] = {}
        for v in rows:
            counts = per.setdefault(v["annotator"], dict.fromkeys(CHOICES, 0))
            counts[v["choice"]] += 1
            by_pair.setdefault(v["pair_id"], []).append((v["annotator"], v["choice"]))
        overlap = [sorted(c) for c in by_pair.values() if len(c) > 1]
        # rater 1 / rater 2 by annotator name, so with two annotators this is exactly their Cohen's kappa
        rated = [(x[1], y[1]) for c in overlap for x, y in combinations(c, 2)]
        ties = sum(1 for v in rows if v["choice"] in ("tie", "both_bad"))
        return Stats(votes=per, tie_rate=ties / len(rows) if rows else 0.0, overlapping_pairs=len(overlap),
                     agreement=sum(x == y for x, y in rated) / len(rated) if rated else None,
                     kappa=cohen_kappa([x for x, _ in rated], [y for _, y in rated]))


def _pair(row: sqlite3.Row) -> Pair:
    return Pair(id=row["id"], prompt_index=row["prompt_index"], prompt=row["prompt"], answer_a=row["answer_a"],
                answer_b=row["answer_b"], policy_a=row["policy_a"], policy_b=row["policy_b"], swapped=bool(row["swapped"]))


def write_jsonl(rows: list[dict], out: str | Path) -> Path:
    """Write rows to `out` atomically (temporary file renamed into place)."""
    return atomic.write_jsonl(out, rows)


def export_preferences(store: FeedbackStore, out: str | Path) -> int:
    """Write the store's decided votes as preference JSONL; zero decided votes is an error, not an empty file."""
    rows = store.preferences()
    if not rows:
        raise ValueError(f"{store.path} holds no decided votes (A or B) to export; vote on the page first "
                         "(ties and 'both bad' are not preferences)")
    write_jsonl(rows, out)
    return len(rows)

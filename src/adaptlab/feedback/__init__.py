"""Human feedback (a web page over a SQLite store) and an AI judge, both producing preference rows."""

from adaptlab.feedback.backends import HttpJudge, LocalJudge, make_backend
from adaptlab.feedback.judge import JudgeReward, judge_pairs, report
from adaptlab.feedback.store import FeedbackStore, export_preferences

__all__ = ["FeedbackStore", "HttpJudge", "JudgeReward", "LocalJudge", "export_preferences", "judge_pairs",
           "make_backend", "report"]

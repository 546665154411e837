"""Kaggle-style competitions: MLE-bench's prepared layout and our flat one, graders (metrics + submission
validation) and medals from a leaderboard, offline. `evolve kaggle grade|grade-all` (cli.py)."""

from evolve.competition.config import CompetitionConfig, CompetitionError, Medals
from evolve.competition.grade import Report, aggregate, grade
from evolve.competition.layout import Competition, find_competition
from evolve.competition.metrics import METRICS, Metric

__all__ = ["METRICS", "Competition", "CompetitionConfig", "CompetitionError", "Medals", "Metric", "Report",
           "aggregate", "find_competition", "grade"]

"""Medals without Kaggle: thresholds from a leaderboard by MLE-bench's rules, and what a score earns.

MLE-bench (`mlebench/grade_helpers.py`, `Grader.rank_score`) takes the score at a rank of the leaderboard,
by the number of teams N, after Kaggle's progression table (positions count from 1, fractions round down,
never below rank 1):

    N < 100:        gold top 10 %,            silver top 20 %,   bronze top 40 %
    100 <= N < 250: gold rank 10,             silver top 20 %,   bronze top 40 %
    250 <= N < 1000: gold rank 10 + 0.2 % N,  silver rank 50,    bronze rank 100
    N >= 1000:      gold rank 10 + 0.2 % N,   silver top 5 %,    bronze top 10 %

The median threshold is the median of all scores. A score that ties a medal threshold earns the medal;
above_median is strict. Only the leaderboard's `score` column is read (MLE-bench's files are Kaggle's
export: scoreNullable, teamId, hasTeamName, submissionDate, score, hasScore), best row first. MLE-bench
infers the direction from that order; here the competition says it, and a leaderboard ordered the other
way is an error rather than a silent flip.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evolve.competition.config import CompetitionError, Medals
from evolve.competition.table import TableError, number, read


@dataclass(frozen=True)
class Rank:
    gold_medal: bool
    silver_medal: bool
    bronze_medal: bool
    above_median: bool

    @property
    def any_medal(self) -> bool:
        return self.gold_medal or self.silver_medal or self.bronze_medal

    @property
    def medal(self) -> str | None:
        return "gold" if self.gold_medal else "silver" if self.silver_medal else "bronze" if self.bronze_medal \
            else None


def medal_positions(teams: int) -> tuple[int, int, int]:
    """The 1-based ranks whose scores are the gold, silver and bronze thresholds on a board of `teams`."""
    if teams < 1:
        raise ValueError("a leaderboard needs at least one team")
    if teams < 100:
        return max(1, int(teams * 0.1)), max(1, int(teams * 0.2)), max(1, int(teams * 0.4))
    if teams < 250:
        return 10, max(1, int(teams * 0.2)), max(1, int(teams * 0.4))
    if teams < 1000:
        return 10 + int(teams * 0.002), 50, 100
    return 10 + int(teams * 0.002), max(1, int(teams * 0.05)), max(1, int(teams * 0.1))


def thresholds(scores_best_first: list[float]) -> Medals:
    gold, silver, bronze = (scores_best_first[p - 1] for p in medal_positions(len(scores_best_first)))
    return Medals(float(gold), float(silver), float(bronze), float(np.median(scores_best_first)))


def rank(score: float | None, medals: Medals | None, lower_is_better: bool) -> Rank:
    """What `score` earns against `medals`; nothing for no score (an invalid submission) or no thresholds."""
    if score is None or medals is None:
        return Rank(False, False, False, False)

    def reaches(threshold: float) -> bool:
        return score <= threshold if lower_is_better else score >= threshold

    gold = reaches(medals.gold)
    silver = not gold and reaches(medals.silver)
    bronze = not gold and not silver and reaches(medals.bronze)
    above = score < medals.median if lower_is_better else score > medals.median
    return Rank(gold, silver, bronze, above)


def read_leaderboard(path: Path, lower_is_better: bool, notes: list[str]) -> list[float]:
    """The scores of `path`, best first; rows without a score (teams that never scored) are left out and
    counted in `notes`."""
    try:
        table = read(path, "leaderboard")
    except TableError as e:
        raise CompetitionError(str(e)) from None
    if "score" not in table.header:
        raise CompetitionError(f"{path}: no `score` column; a leaderboard lists one score per team, best first")
    scores, blank = [], 0
    for line, text in enumerate(table.column("score"), start=2):
        if not text.strip():
            blank += 1
            continue
        value = number(text)
        if value is None:
            raise CompetitionError(f"{path}: line {line}: score {text!r} is not a number")
        scores.append(value)
    if not scores:
        raise CompetitionError(f"{path}: no scores; a leaderboard lists one score per team, best first")
    if blank:
        notes.append(f"{path.name}: {blank} rows without a score left out ({len(scores)} teams ranked)")
    if scores[0] != scores[-1] and (scores[0] < scores[-1]) != lower_is_better:
        direction = "lower" if scores[0] < scores[-1] else "higher"
        raise CompetitionError(f"{path}: it runs from {scores[0]:g} to {scores[-1]:g} ({direction} is better, best "
                               f"first), but the competition has lower_is_better: {str(lower_is_better).lower()}; "
                               "set lower_is_better in competition.yaml or sort the board best first")
    return sorted(scores, reverse=not lower_is_better)

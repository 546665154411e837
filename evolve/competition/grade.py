"""grade(competition, submission) → a Report with MLE-bench's CompetitionReport keys, and the aggregate of many.

As MLE-bench (`mlebench/grade.py`, `mlebench/grade_helpers.py`): the score is rounded to 5 decimals; a
submission that is not a .csv file does not exist; any problem that stops grading makes it invalid (score
None, no medal), and the thresholds are reported either way. Two keys are ours: `problems` (each one line,
see validate.py) and `notes` (what was inferred about the competition).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from evolve.competition.answers import Answers, load_answers
from evolve.competition.layout import Competition
from evolve.competition.medals import rank, read_leaderboard, thresholds
from evolve.competition.metrics import MetricUndefined, score
from evolve.competition.validate import validate

SCORE_DECIMALS = 5  # MLE-bench's Grader rounds every score so


@dataclass(frozen=True)
class Report:
    competition_id: str
    score: float | None
    gold_threshold: float | None  # None: the competition has neither a leaderboard nor medal thresholds
    silver_threshold: float | None
    bronze_threshold: float | None
    median_threshold: float | None
    any_medal: bool
    gold_medal: bool
    silver_medal: bool
    bronze_medal: bool
    above_median: bool
    submission_exists: bool
    valid_submission: bool
    is_lower_better: bool
    created_at: str
    submission_path: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def medal(self) -> str | None:
        return "gold" if self.gold_medal else "silver" if self.silver_medal else "bronze" if self.bronze_medal \
            else None


def grade(comp: Competition, submission: str | Path, answers: Answers | None = None) -> Report:
    """The report of `submission` for `comp`. A CompetitionError (bad answers, a bad leaderboard) propagates:
    that is the competition's fault, not the submission's."""
    path = Path(submission)
    notes = list(comp.notes)
    answers = answers or load_answers(comp)
    medals = comp.medals
    if comp.leaderboard is not None:
        medals = thresholds(read_leaderboard(comp.leaderboard, comp.lower_is_better, notes))
    exists = path.is_file() and path.suffix.lower() == ".csv"
    value, problems = None, []
    if not exists:
        why = "not a .csv file" if path.is_file() else "not a file" if path.exists() else "no such file"
        problems.append(f"{path}: {why}; a submission is a CSV file")
    else:
        checked = validate(comp, answers, path)
        problems = checked.problems
        if checked.predictions is not None:
            try:
                value = round(score(comp.metric, answers.truth, checked.predictions, comp.k), SCORE_DECIMALS)
            except MetricUndefined as e:
                problems.append(f"{path}: {e}")
    earned = rank(value, medals, comp.lower_is_better)
    return Report(
        competition_id=comp.id, score=value,
        gold_threshold=medals.gold if medals else None, silver_threshold=medals.silver if medals else None,
        bronze_threshold=medals.bronze if medals else None, median_threshold=medals.median if medals else None,
        any_medal=earned.any_medal, gold_medal=earned.gold_medal, silver_medal=earned.silver_medal,
        bronze_medal=earned.bronze_medal, above_median=earned.above_median, submission_exists=exists,
        valid_submission=value is not None, is_lower_better=comp.lower_is_better,
        created_at=datetime.now().isoformat(), submission_path=str(path), problems=problems, notes=notes)


def aggregate(reports: list[Report]) -> dict:
    """MLE-bench's summary keys (`aggregate_reports`), plus the any-medal rate and a row per competition."""
    runs = len(reports)
    per: dict[str, dict] = {}
    for r in reports:
        row = per.setdefault(r.competition_id, {"runs": 0, "valid_submissions": 0, "gold_medals": 0,
                                                "silver_medals": 0, "bronze_medals": 0, "any_medal": 0,
                                                "above_median": 0, "scores": []})
        row["runs"] += 1
        row["valid_submissions"] += r.valid_submission
        row["gold_medals"] += r.gold_medal
        row["silver_medals"] += r.silver_medal
        row["bronze_medals"] += r.bronze_medal
        row["any_medal"] += r.any_medal
        row["above_median"] += r.above_median
        row["scores"].append(r.score)
    medals = sum(r.any_medal for r in reports)
    return {
        "total_runs": runs,
        "total_runs_with_submissions": sum(r.submission_exists for r in reports),
        "total_valid_submissions": sum(r.valid_submission for r in reports),
        "total_medals": medals,
        "total_gold_medals": sum(r.gold_medal for r in reports),
        "total_silver_medals": sum(r.silver_medal for r in reports),
        "total_bronze_medals": sum(r.bronze_medal for r in reports),
        "total_above_median": sum(r.above_median for r in reports),
        "any_medal_rate": medals / runs if runs else 0.0,
        "per_competition": per,
        "competition_reports": [r.to_dict() for r in reports],
    }


def format_report(r: Report, metric: str) -> str:
    """The text `evolve kaggle grade` prints."""
    direction = "lower" if r.is_lower_better else "higher"
    lines = [f"competition: {r.competition_id} ({metric}, {direction} is better)"]
    if r.valid_submission:
        lines.append(f"score: {r.score:.{SCORE_DECIMALS}f}")
    if r.gold_threshold is not None:
        op = "<=" if r.is_lower_better else ">="
        lines.append(f"medal: {r.medal or 'none'} (gold {op} {r.gold_threshold:g}, silver {op} "
                     f"{r.silver_threshold:g}, bronze {op} {r.bronze_threshold:g}; median {r.median_threshold:g})")
        lines.append(f"above median: {'yes' if r.above_median else 'no'}")
    else:
        lines.append("medal: no leaderboard.csv or medal thresholds to rank against")
    lines += [f"problem: {p}" for p in r.problems]
    verdict = "valid" if r.valid_submission else f"invalid, {len(r.problems)} problem{'s' * (len(r.problems) != 1)}"
    lines.append(f"submission: {r.submission_path} ({verdict})")
    return "\n".join(lines)


def dumps(obj: dict) -> str:
    return json.dumps(obj, indent=2)

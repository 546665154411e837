"""A competition campaign's final medal: the best round's submission.csv graded against the private answers.

The report is the agent's, outside every solution's sandbox, so it may read the answers that no run ever sees;
it grades with evolve/competition/grade.py, the same grader as `evolve kaggle grade`, and says what that says
(score, medal, above median, the thresholds, every problem). It only reads the competition folder. Where the answers
are not there (a real competition's are never handed out) it says so instead of guessing; any other reason a
medal cannot be computed is one line too, and the rest of the report is written either way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from evolve.campaign.spec import CampaignSpec
from evolve.competition.config import CompetitionError
from evolve.competition.cv import SUBMISSION, open_competition
from evolve.competition.grade import SCORE_DECIMALS, Report, grade
from evolve.competition.layout import SAMPLES
from evolve.records.ledger import RoundRecord

NO_ANSWERS = "no private answers: medal not computed"


def medal_lines(spec: CampaignSpec, best: RoundRecord | None, run_dir: Callable[[int], Path]) -> list[str]:
    """The medal section's lines for the campaign's best round (`run_dir(n)`: round n's run directory)."""
    folder = spec.objective.competition  # the workload holds it to its own competition and metric
    if not folder:
        return ["medal not computed: the spec's objective names no competition (objective.competition)"]
    if best is None:
        return ["medal not computed: no round has a CV score, so there is no best submission to grade"]
    submission = run_dir(best.round) / SUBMISSION
    try:
        comp = open_competition(folder, spec.objective.metric)
        if not comp.answers.is_file():
            return [f"{NO_ANSWERS} ({comp.answers} is not there)"]
        report = grade(comp, submission)
    except CompetitionError as e:
        if private := _without_answers(Path(folder)):
            return [f"{NO_ANSWERS} ({private} holds no answers file)"]
        return [f"medal not computed: {e}"]
    return _lines(report, best.round, comp.metric_name)


def _lines(r: Report, best_round: int, metric: str) -> list[str]:
    # `evolve kaggle grade`'s facts without its `>=`: markdown escapes that, and the direction is said once
    direction = "lower" if r.is_lower_better else "higher"
    lines = [f"graded: the submission of round {best_round}, the best by CV",
             f"competition: {r.competition_id} ({metric}, {direction} is better)",
             f"score: {r.score:.{SCORE_DECIMALS}f}" if r.valid_submission else "score: none (invalid submission)",
             f"medal: {r.medal or 'none'}", f"above median: {'yes' if r.above_median else 'no'}"]
    if r.gold_threshold is None:
        lines.append("thresholds: none (no leaderboard.csv or medal thresholds to rank against)")
    else:
        lines.append(f"thresholds: gold {r.gold_threshold:g}, silver {r.silver_threshold:g}, bronze "
                     f"{r.bronze_threshold:g}, median {r.median_threshold:g}")
    verdict = "valid" if r.valid_submission else f"invalid, {len(r.problems)} problem{'s' * (len(r.problems) != 1)}"
    return lines + [f"problem: {p}" for p in r.problems] + [f"note: {n}" for n in r.notes] + \
        [f"submission: {r.submission_path} ({verdict})"]


def _without_answers(root: Path) -> Path | None:
    """The competition's private folder when it holds no file an answers file could be (or is not there)."""
    root = root.parent if root.name == "prepared" else root
    if not root.is_dir():
        return None  # the whole competition is gone: the grader's own line says so better
    private = (root / "prepared" if (root / "prepared").is_dir() else root) / "private"
    try:
        files = [p for p in private.iterdir() if p.is_file() and p.name not in SAMPLES] if private.is_dir() else []
    except OSError:
        return None
    return None if files else private

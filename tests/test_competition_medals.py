"""Medals by MLE-bench's Kaggle rules on leaderboards of 50, 150, 500 and 1500 teams, both directions; ties
earn the medal, above-median is strict; a leaderboard that contradicts the direction is refused."""

from __future__ import annotations

import numpy as np
import pytest

from evolve.competition import CompetitionError, Medals, find_competition, grade
from evolve.competition.medals import medal_positions, rank, read_leaderboard, thresholds
from tests.competitions import make_competition, write_csv, write_leaderboard


@pytest.mark.parametrize("teams, positions", [
    (5, (1, 1, 2)),  # fractions round down, never below rank 1
    (50, (5, 10, 20)),  # < 100: top 10 / 20 / 40 %
    (150, (10, 30, 60)),  # 100-249: gold rank 10, silver top 20 %, bronze top 40 %
    (500, (11, 50, 100)),  # 250-999: gold rank 10 + 0.2 % N, silver rank 50, bronze rank 100
    (1500, (13, 75, 150)),  # >= 1000: gold rank 10 + 0.2 % N, silver top 5 %, bronze top 10 %
])
def test_medal_positions_follow_the_table_by_team_count(teams, positions):
    assert medal_positions(teams) == positions


@pytest.mark.parametrize("teams", [50, 150, 500, 1500])
@pytest.mark.parametrize("lower", [False, True])
def test_thresholds_and_medals_on_a_board(tmp_path, teams, lower):
    # team i (1-based) scored i (lower is better) or teams - i + 1 (higher is better): rank r holds score_of(r)
    score_of = (lambda r: float(r)) if lower else (lambda r: float(teams - r + 1))
    board = [score_of(r) for r in range(1, teams + 1)]
    path = write_leaderboard(tmp_path / "leaderboard.csv", board)
    t = thresholds(read_leaderboard(path, lower, []))
    gold, silver, bronze = medal_positions(teams)
    assert (t.gold, t.silver, t.bronze) == (score_of(gold), score_of(silver), score_of(bronze))
    assert t.median == float(np.median(board))
    better = -0.5 if lower else 0.5  # half a rank better
    assert rank(score_of(gold), t, lower).gold_medal  # a tie earns it
    assert rank(score_of(gold + 1), t, lower).silver_medal
    assert rank(score_of(silver) + better, t, lower).silver_medal
    assert rank(score_of(bronze), t, lower).bronze_medal
    none = rank(score_of(bronze + 1), t, lower)
    assert not none.any_medal and none.medal is None
    assert rank(score_of(bronze + 1), t, lower).above_median
    assert not rank(t.median, t, lower).above_median  # strict, as MLE-bench's
    assert not rank(score_of(teams), t, lower).above_median


def test_only_one_medal_at_a_time_and_nothing_without_a_score_or_thresholds():
    t = Medals(gold=0.9, silver=0.8, bronze=0.7, median=0.5)
    r = rank(0.95, t, False)
    assert (r.gold_medal, r.silver_medal, r.bronze_medal, r.medal) == (True, False, False, "gold")
    assert not rank(None, t, False).any_medal
    assert not rank(0.99, None, False).any_medal


def test_the_leaderboard_must_run_best_first_in_the_competitions_direction(tmp_path):
    path = write_leaderboard(tmp_path / "leaderboard.csv", [0.1, 0.2, 0.3])
    assert read_leaderboard(path, True, []) == [0.1, 0.2, 0.3]
    with pytest.raises(CompetitionError, match="lower is better, best first.*lower_is_better: false"):
        read_leaderboard(path, False, [])


def test_teams_without_a_score_are_left_out_and_said(tmp_path):
    path = write_csv(tmp_path / "leaderboard.csv", ["teamId", "score"], [[1, 0.9], [2, ""], [3, 0.5]])
    notes: list[str] = []
    assert read_leaderboard(path, False, notes) == [0.9, 0.5]
    assert notes == ["leaderboard.csv: 1 rows without a score left out (2 teams ranked)"]


@pytest.mark.parametrize("rows, needle", [
    ([], "no scores"),
    ([["x"]], "line 2: score 'x' is not a number"),
])
def test_a_bad_leaderboard_is_one_line(tmp_path, rows, needle):
    with pytest.raises(CompetitionError, match=needle):
        read_leaderboard(write_csv(tmp_path / "leaderboard.csv", ["score"], rows), False, [])
    with pytest.raises(CompetitionError, match="no `score` column"):
        read_leaderboard(write_csv(tmp_path / "lb.csv", ["points"], [[1]]), False, [])


def test_a_graded_submission_earns_its_medal_from_the_competitions_leaderboard(tmp_path):
    answers = [[i, i % 2] for i in range(20)]
    board = [1.0 - 0.01 * r for r in range(60)]  # 60 teams: gold = rank 6's 0.95, silver rank 12, bronze rank 24
    comp = find_competition(make_competition(tmp_path / "c", answers, yaml="metric: accuracy\n", leaderboard=board))
    sub = write_csv(tmp_path / "sub.csv", ["id", "y"], [[i, i % 2 if i else 1] for i in range(20)])  # 19/20
    r = grade(comp, sub)
    assert r.score == 0.95 and r.gold_medal and r.any_medal and r.above_median
    assert (r.gold_threshold, r.silver_threshold, r.bronze_threshold) == (0.95, 0.89, 0.77)
    assert r.median_threshold == pytest.approx(0.705)


def test_medal_thresholds_may_come_from_competition_yaml(tmp_path):
    yaml = "metric: rmse\nmedals: {gold: 0.1, silver: 0.2, bronze: 0.3, median: 0.5}\n"
    comp = find_competition(make_competition(tmp_path / "c", [[1, 1.0]], yaml=yaml))
    r = grade(comp, write_csv(tmp_path / "sub.csv", ["id", "y"], [[1, 1.2]]))
    assert r.score == 0.2 and r.silver_medal and r.is_lower_better and r.above_median

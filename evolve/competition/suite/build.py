"""One dev-suite competition from its Spec: the data files (write.py), the field of entrants scored by the
grader (leaderboard.py), then the description, which quotes the board's medal thresholds."""

from __future__ import annotations

from pathlib import Path

from evolve.competition.medals import thresholds
from evolve.competition.suite.describe import description
from evolve.competition.suite.leaderboard import score_field, write_leaderboard
from evolve.competition.suite.spec import Spec
from evolve.competition.suite.write import split, write_competition


def build(spec: Spec, root: Path) -> tuple[int, int]:
    """Write `spec`'s competition at `root` (a new folder); returns (rows, entrants)."""
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    data = spec.load()
    s = split(spec, data)
    write_competition(spec, data, s, root)
    with threadpool_limits(1):  # on a shared 2-core machine OpenMP's idle spinning made boosting 10x slower
        board = score_field(spec, data, s, root)
    write_leaderboard(root / "leaderboard.csv", board)
    medals = thresholds([score for score, _ in board])
    (root / "public" / "description.md").write_text(
        description(spec, data, s, board, medals, root / "public" / "sample_submission.csv"))
    return data.rows, len(board)

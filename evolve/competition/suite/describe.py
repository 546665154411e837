"""A dev-suite competition's public/description.md, written like a Kaggle overview: the task, the data, the
metric, the submission format, and how the leaderboard and its medal thresholds were made."""

from __future__ import annotations

from pathlib import Path

from evolve.competition.config import Medals
from evolve.competition.metrics import METRICS
from evolve.competition.suite.entrants import EXTRA_SEEDS, FRACTIONS
from evolve.competition.suite.models import CLASSIFIERS, REGRESSORS, STOCHASTIC
from evolve.competition.suite.spec import Data, Spec
from evolve.competition.suite.write import ID_COLUMN, Split, target_columns

EVALUATION = {
    "roc_auc": "the area under the ROC curve between the predicted probability and the observed class",
    "log_loss": "the multi-class logarithmic loss; each row of probabilities is rescaled to sum to 1 and every "
                "probability clipped to [1e-15, 1 - 1e-15]",
    "macro_f1": "the F1 score of each class, averaged with equal weight per class (macro-F1)",
    "quadratic_weighted_kappa": "the quadratic weighted kappa between the predicted and the true grades: 1 is "
                                "complete agreement, 0 what chance gives, and a prediction two grades off "
                                "costs four times one grade off",
    "accuracy": "the share of test images whose predicted digit is right",
    "rmse": "the root mean squared error between the predicted and the true values",
    "rmsle": "the root mean squared logarithmic error, sqrt(mean((log(1 + p) - log(1 + a))^2)); predictions "
             "must be above -1",
    "mae": "the mean absolute error between the predicted and the true values",
}


def description(spec: Spec, data: Data, s: Split, board: list[tuple[float, str]], medals: Medals,
                sample: Path) -> str:
    metric = METRICS[spec.metric]
    direction = "lower" if metric.lower_is_better else "higher"
    op = "≤" if metric.lower_is_better else "≥"
    columns = target_columns(spec, s)
    head = sample.read_text().splitlines()[:3]
    families = ", ".join(CLASSIFIERS if spec.classification else REGRESSORS)
    shares = ", ".join(f"{round(f * 100)} %" for f in FRACTIONS)
    best, worst = board[0], board[-1]
    return "\n".join([
        f"# {spec.title}", "",
        "## Overview", "", spec.overview, "",
        "## Data", "", *_files(spec, data, s), "",
        "## Evaluation", "",
        f"Submissions are scored by {EVALUATION[spec.metric]} (`{spec.metric}`; {direction} is better).", "",
        "## Submission format", "",
        f"One row per test id, with the columns `{ID_COLUMN}`, " + ", ".join(f"`{c}`" for c in columns)
        + f" ({_what(spec)}); `sample_submission.csv` is a valid example:", "",
        "```", *head, "...", "```", "",
        "## Leaderboard", "",
        f"`leaderboard.csv` holds {len(board)} entrants, each fitted on `train` and scored on the private test "
        f"answers by evolve's grader, best first. Every entrant is one of the model families {families} "
        f"(scikit-learn), trained on all the features or a random half of them, and on {shares} of the "
        f"training rows (a stand-in for time budgets), with its own seed; the baselines that ignore the "
        f"features enter once per share, and {', '.join(STOCHASTIC)} enter {EXTRA_SEEDS} more times with "
        f"other seeds on all the data. The column `teamName` names each entrant. Scores run from "
        f"{best[0]:g} ({best[1]}) to {worst[0]:g} ({worst[1]}).", "",
        f"Medals follow MLE-bench's rank table for {len(board)} teams: gold {op} {medals.gold:g}, silver {op} "
        f"{medals.silver:g}, bronze {op} {medals.bronze:g}; the median entrant scores {medals.median:g}.", "",
        "## Source", "", spec.source, ""])


def _files(spec: Spec, data: Data, s: Split) -> list[str]:
    rows = f"{len(s.train)} training rows and {len(s.test)} test rows"
    if spec.image_scale:
        side = data.images.shape[1] * spec.image_scale
        return [f"{rows}, one {side}x{side} greyscale PNG each.", "",
                "- `train/<id>.png`, `test/<id>.png`: the images", f"- `train.csv`: `{ID_COLUMN}`, `{spec.target}`",
                "- `sample_submission.csv`: every test id, in the submission format"]
    features = ", ".join(f"`{n}`" for n in data.feature_names)
    return [f"{rows}; the features are {features}.", "",
            f"- `train.csv`: `{ID_COLUMN}`, the features and the target `{spec.target}`",
            f"- `test.csv`: `{ID_COLUMN}` and the features",
            "- `sample_submission.csv`: every test id, in the submission format"]


def _what(spec: Spec) -> str:
    if spec.output == "probability":
        return f"the probability that `{spec.target}` is {spec.positive}"
    if spec.output == "probabilities":
        return "the probability of each class; each row sums to 1"
    if spec.output == "label":
        return "the predicted class"
    return "the predicted value"

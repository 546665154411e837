"""Our campaigns against AutoML libraries on the same competitions, at the same wall budget, graded alike.

    python benchmarks/kaggle_vs_automl.py DIR --budget 2m [--only ID ...] [--ours RESULTS.json] [--home H]
                                          [--out REPORT.json]

DIR is a prepared suite (`evolve kaggle prepare --suite dev DIR`). "Ours" is `evolve kaggle run-suite` at
--budget (its library function, campaigns in --home, default a new temporary folder), or an existing
RESULTS.json of it (--ours; its budget must be --budget). The peers see only the public data, as a solution
does: the CSV features of train.csv/test.csv, or for images the pixels read by the solution template's own
reader (playbooks/templates/competition/solution.py, at its default image_size). Each peer's submission.csv
is graded by grade.py against the private answers, exactly as ours is.

- FLAML: `flaml.AutoML`, time_budget = the budget, n_jobs = cores // --parallel (our campaigns' share
  too), the competition's metric mapped to FLAML's name where FLAML has one (else FLAML's default, said in its row).
- AutoGluon: `autogluon.tabular.TabularPredictor`, time_limit = the budget, only when it imports; otherwise
  one line says why it did not run.

norm = ours / peer for a higher-is-better metric, peer / ours for a lower-is-better one, so > 1 means ours is
better. The ratio is defined only when both scores are > 0 (a kappa can be negative, an RMSE can be 0): then
norm is printed as the difference, oriented the same way (Δ+0.01 means ours is better by 0.01). The "ours >=
strongest peer" share compares the scores directly in the metric's direction, never the ratio; an invalid
submission loses to any valid one. Goal: 70 % of the competitions.

The same budget is not the same wall time: a campaign's budget counts its runs' time (campaign/budget.py), and
the agent's own work per round (git, MLflow, triage, a process per run) comes on top, while a peer's
time_budget bounds its search (its final fit may run past it a little). The table shows each one's wall.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import runpy
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evolve.competition.config import CompetitionError  # noqa: E402  (after the repository is on the path)
from evolve.competition.grade import grade  # noqa: E402
from evolve.competition.layout import Competition  # noqa: E402
from evolve.competition.run import parse_duration  # noqa: E402
from evolve.competition.suite_run import SuiteRequest, cores, plan, run_suite  # noqa: E402

TEMPLATE = ROOT / "playbooks" / "templates" / "competition" / "solution.py"
# our metric → FLAML's; a metric not here runs with FLAML's default for the task ("auto")
FLAML_METRICS = {"accuracy": "accuracy", "macro_f1": "macro_f1", "log_loss": "log_loss", "rmse": "rmse",
                 "mae": "mae", "roc_auc": "roc_auc"}
AUTOGLUON_METRICS = {"accuracy": "accuracy", "macro_f1": "f1_macro", "log_loss": "log_loss",
                     "rmse": "root_mean_squared_error", "mae": "mean_absolute_error", "roc_auc": "roc_auc",
                     "quadratic_weighted_kappa": "quadratic_kappa", "rmsle": "root_mean_squared_error"}


# ---------------------------------------------------------------------------------------- the public data

def template() -> dict:
    """The solution template's readers (read_csv, tabular, images, targets_of, write, ...), loaded from its file so
    a peer reads exactly what a solution reads. Its one-thread default is for its own process: undone here, so
    the peers keep the n_jobs they are given."""
    before = os.environ.get("OMP_NUM_THREADS")
    try:
        return runpy.run_path(str(TEMPLATE))
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before


def public_data(comp: Competition, t: dict) -> dict:
    """X, X_test, the targets (one array per fitted output), ids and the submission's header, from public/."""
    data = comp.public
    sample = t["read_csv"](t["first"](data, ("sample_submission.csv", "sampleSubmission.csv")))
    id_column, targets = sample[0][0], sample[0][1:]
    train = t["read_csv"](t["first"](data, ("train.csv", "train_labels.csv")))
    train_ids = t["column"](train, id_column)
    if not (data / "test.csv").is_file() and (data / "test").is_dir():
        size = t["DEFAULTS"]["image_size"]
        test_ids = t["column"](sample, id_column)
        X, X_test = t["images"](data / "train", train_ids, size), t["images"](data / "test", test_ids, size)
    else:
        test = t["read_csv"](data / "test.csv")
        test_ids = t["column"](test, id_column)
        X, X_test = t["tabular"](train, test, id_column)
    kind = t["KINDS"][comp.metric_name]
    return {"X": X, "X_test": X_test, "ys": t["targets_of"](train, id_column, targets, kind), "kind": kind,
            "header": sample[0], "targets": targets, "test_ids": test_ids}


def predictions_to_columns(d: dict, classes: list[str], p: np.ndarray, eps: float) -> list[np.ndarray]:
    """A peer's class probabilities as the submission's columns, clipped as the template clips them."""
    wanted = ["1"] if len(d["targets"]) == 1 else d["targets"]
    cols = [p[:, classes.index(c)] if c in classes else np.zeros(len(p)) for c in wanted]
    return [np.clip(c, eps, 1 - eps) for c in cols]


# ---------------------------------------------------------------------------------------- peers

def flaml_submission(comp: Competition, budget_s: float, out: Path, n_jobs: int | None = None) -> dict:
    """FLAML on the public data within budget_s; writes out/submission.csv and returns what it did."""
    from flaml import AutoML

    t = template()
    d = public_data(comp, t)
    metric = FLAML_METRICS.get(comp.metric_name, "auto")
    if metric == "roc_auc" and len(d["targets"]) > 1:
        metric = "roc_auc_ovr"
    task = "regression" if d["kind"] == "values" else "classification"
    began, columns, learners = time.perf_counter(), [], []
    for y in d["ys"]:  # one model per fitted output; the budget is shared between them
        automl = AutoML()
        with warnings.catch_warnings():  # thousands of scikit-learn convergence and joblib lines per minute
            warnings.simplefilter("ignore")
            automl.fit(d["X"], y.astype(float) if task == "regression" else y, task=task, metric=metric,
                       time_budget=budget_s / len(d["ys"]), n_jobs=n_jobs or cores(), seed=0, verbose=0,
                       log_file_name="", mlflow_logging=False)
        learners.append(automl.best_estimator)
        if d["kind"] == "probabilities":
            classes = [str(c) for c in automl.classes_]
            columns += predictions_to_columns(d, classes, automl.predict_proba(d["X_test"]), t["EPS"])
        else:
            pred = automl.predict(d["X_test"])
            columns.append(np.maximum(pred, 0.0) if comp.metric_name == "rmsle" else
                           pred if task == "regression" else np.asarray(pred).astype(str))
    out.mkdir(parents=True, exist_ok=True)
    t["write"](out / "submission.csv", d["header"], d["test_ids"], columns)
    note = "" if metric != "auto" else f"FLAML has no {comp.metric_name}: its default metric for {task}"
    return {"submission": str(out / "submission.csv"), "wall_s": round(time.perf_counter() - began, 1),
            "metric": metric, "learners": learners, "note": note}


def autogluon_submission(comp: Competition, budget_s: float, out: Path, n_jobs: int | None = None) -> dict:
    """AutoGluon's TabularPredictor on the same public data (only when autogluon.tabular imports)."""
    import pandas as pd
    from autogluon.tabular import TabularPredictor

    t = template()
    d = public_data(comp, t)
    metric = AUTOGLUON_METRICS.get(comp.metric_name)
    problem = {"values": "regression", "probabilities": "multiclass" if len(d["targets"]) > 1 else "binary"}.get(
        d["kind"], "multiclass")
    names = [f"f{j}" for j in range(d["X"].shape[1])]
    began, columns = time.perf_counter(), []
    for n, y in enumerate(d["ys"]):
        frame = pd.DataFrame(d["X"], columns=names).assign(target=y.astype(float) if problem == "regression" else y)
        predictor = TabularPredictor(label="target", eval_metric=metric, problem_type=problem, verbosity=0,
                                     path=str(out / f"autogluon-{n}")).fit(
            frame, time_limit=budget_s / len(d["ys"]), num_cpus=n_jobs or cores())
        test = pd.DataFrame(d["X_test"], columns=names)
        if d["kind"] == "probabilities":
            p = predictor.predict_proba(test)
            columns += predictions_to_columns(d, [str(c) for c in p.columns], p.to_numpy(), t["EPS"])
        else:
            pred = predictor.predict(test).to_numpy()
            columns.append(pred.astype(float) if problem == "regression" else pred.astype(str))
    out.mkdir(parents=True, exist_ok=True)
    t["write"](out / "submission.csv", d["header"], d["test_ids"], columns)
    note = "" if metric else f"AutoGluon has no {comp.metric_name}: its default metric"
    return {"submission": str(out / "submission.csv"), "wall_s": round(time.perf_counter() - began, 1),
            "metric": metric or "default", "note": note}


def peer_row(name: str, comp: Competition, budget_s: float, out: Path, n_jobs: int) -> dict:
    """One peer on one competition, graded; a peer that fails is its row, not the benchmark's end."""
    try:
        done = PEERS[name](comp, budget_s, out, n_jobs)
        report = grade(comp, done["submission"])
        return {**done, "score": report.score, "medal": report.medal or "none", "valid": report.valid_submission}
    except Exception as e:
        return {"score": None, "medal": "none", "valid": False,
                "note": f"failed: {type(e).__name__}: {' '.join(str(e).split())[:200]}"}


def autogluon_missing() -> str:
    """Why AutoGluon cannot run here ("" when it can)."""
    try:
        import autogluon.tabular  # noqa: F401
    except Exception as e:  # an ImportError, or a broken install that fails while importing
        return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
    return ""


PEERS: dict[str, Callable[..., dict]] = {"FLAML": flaml_submission, "AutoGluon": autogluon_submission}


# ---------------------------------------------------------------------------------------- comparing

def norm(ours: float | None, peer: float | None, lower: bool) -> str:
    """ours against a peer, > 1 (or Δ > 0) when ours is better; see the module doc for the rule."""
    if ours is None or peer is None:
        return "ours invalid" if ours is None and peer is not None else "peer invalid" if ours is not None else "-"
    if ours > 0 and peer > 0:
        return f"{(peer / ours) if lower else (ours / peer):.3f}"
    return f"Δ{(peer - ours) if lower else (ours - peer):+.4g}"


def at_least(ours: float | None, peer: float | None, lower: bool) -> bool:
    if ours is None:
        return False
    return peer is None or (ours <= peer if lower else ours >= peer)


def compare(ours_rows: dict[str, dict], peer_rows: dict[str, dict[str, dict]], comps: list[Competition]) -> dict:
    rows = []
    for comp in comps:
        mine, peers = ours_rows[comp.id], peer_rows[comp.id]
        scores = [p["score"] for p in peers.values()]
        valid = [s for s in scores if s is not None]
        strongest = (min(valid) if comp.lower_is_better else max(valid)) if valid else None
        rows.append({"competition": comp.id, "metric": comp.metric_name, "lower_is_better": comp.lower_is_better,
                     "ours": mine["private_score"], "ours_medal": mine["medal"], "ours_wall_s": mine.get("wall_s"),
                     "ours_rounds": mine.get("rounds"), "peers": peers,
                     "norm": {n: norm(mine["private_score"], p["score"], comp.lower_is_better)
                              for n, p in peers.items()},
                     "ours_at_least_strongest": at_least(mine["private_score"], strongest, comp.lower_is_better)})
    wins = sum(r["ours_at_least_strongest"] for r in rows)
    return {"rows": rows, "ours_at_least_strongest": wins, "competitions": len(rows),
            "share": wins / len(rows) if rows else 0.0, "goal": 0.7}


def format_comparison(result: dict, peer_names: list[str]) -> str:
    cols = ["competition", "metric", "ours", *peer_names, *(f"norm vs {p}" for p in peer_names), "medal ours",
            *(f"medal {p}" for p in peer_names), "ours >= best peer", "wall ours", *(f"wall {p}" for p in peer_names)]
    fmt = (lambda v: "invalid" if v is None else f"{v:.5g}")
    wall = (lambda v: "-" if v is None else f"{v:.0f} s")
    table = [[r["competition"], r["metric"] + (" ↓" if r["lower_is_better"] else " ↑"), fmt(r["ours"]),
              *(fmt(r["peers"][p]["score"]) for p in peer_names), *(r["norm"][p] for p in peer_names),
              r["ours_medal"], *(r["peers"][p]["medal"] for p in peer_names),
              "yes" if r["ours_at_least_strongest"] else "no", wall(r["ours_wall_s"]),
              *(wall(r["peers"][p].get("wall_s")) for p in peer_names)] for r in result["rows"]]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)).rstrip() for t in table]
    for r in result["rows"]:
        lines += [f"{r['competition']}: {p}: {r['peers'][p]['note']}" for p in peer_names if r["peers"][p]["note"]]
    n, wins = result["competitions"], result["ours_at_least_strongest"]
    lines.append(f"ours >= the strongest peer on {wins}/{n} competitions ({result['share']:.0%}); goal 70 %: "
                 + ("met" if result["share"] >= result["goal"] else "not met"))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- main

def load_ours(path: Path, budget_s: float, ids: list[str]) -> dict[str, dict]:
    try:
        results = json.loads(path.read_text())
        rows, theirs = {r["competition"]: r for r in results["rows"]}, float(results["budget_s"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CompetitionError(f"--ours {path}: not a run-suite RESULTS.json ({type(e).__name__}: {e})") from None
    if theirs != budget_s:
        raise CompetitionError(f"--ours {path}: ran at a budget of {theirs:g} s, not --budget {budget_s:g} s; "
                               "a comparison needs the same budget")
    if missing := [i for i in ids if i not in rows]:
        raise CompetitionError(f"--ours {path}: has no row for {', '.join(missing)}; pass --only for what it ran")
    print(f"ours: {path} (run-suite at {theirs:g} s a competition: the same budget as the peers)")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("suite", metavar="DIR", help="a prepared suite (evolve kaggle prepare --suite dev DIR)")
    p.add_argument("--budget", required=True, help="the wall budget a competition, for ours and each peer: 2m")
    p.add_argument("--only", metavar="ID", action="append", default=[], help="only this competition (repeatable)")
    p.add_argument("--ours", metavar="RESULTS.json", help="run-suite's results at the same budget (else run it)")
    p.add_argument("--home", default="", help="where our campaigns are kept (default: a new temporary folder)")
    p.add_argument("--parallel", type=int, default=1,
                   help="competitions at once, ours and each peer's, each with cores // N threads")
    p.add_argument("--out", metavar="REPORT.json", default="", help="write the comparison here (must not exist)")
    args = p.parse_args(argv)
    # made only once the input is known to be good; our campaigns' home unless --home says otherwise
    work = Path(tempfile.gettempdir()) / f"kaggle-vs-automl.{time.strftime('%Y%m%d-%H%M%S')}.{os.getpid()}"
    home = Path(args.home) if args.home else work / "home"
    try:
        if args.out and Path(args.out).exists():
            raise CompetitionError(f"--out {args.out}: already exists; pass a new path")
        budget_s = parse_duration(args.budget)
        entries, _, _ = plan(SuiteRequest(args.suite, args.budget, only=args.only, home=str(home)))
        comps = [e.comp for e in entries]
        ids = [c.id for c in comps]
        ours = load_ours(Path(args.ours), budget_s, ids) if args.ours else None
    except CompetitionError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    work.mkdir(parents=True)
    print(f"{len(comps)} competitions at {args.budget} each; {cores()} cores; work in {work}")
    if ours is None:
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{(work / 'mlflow.db').resolve()}")
        results = run_suite(SuiteRequest(args.suite, args.budget, args.parallel, only=args.only, home=str(home),
                                         workspace=str(work / "workspaces"), out=str(work / "ours.json")))
        ours = {r["competition"]: r for r in results["rows"]}
        print(f"ours: run-suite at {budget_s:g} s a competition, results {work / 'ours.json'}")
    names = ["FLAML"]
    if why := autogluon_missing():
        print(f"AutoGluon: not installed ({why})")
    else:
        names.append("AutoGluon")
    # peers run --parallel at a time with cores // --parallel threads each: the same share of the machine that
    # run-suite gives each of our campaigns
    n_jobs = max(1, cores() // max(1, args.parallel))
    jobs = [(comp, name) for comp in comps for name in names]
    peers: dict[str, dict[str, dict]] = {comp.id: {} for comp in comps}
    def done(comp: Competition, name: str, got: dict) -> None:
        peers[comp.id][name] = got
        print(f"{comp.id}: {name} {got['score'] if got['valid'] else 'invalid'} "
              f"({got.get('wall_s', '-')} s, metric {got.get('metric', '-')}) {got['note']}".rstrip(), flush=True)

    if args.parallel <= 1:  # in this process: nothing to pickle, and a peer's traceback stays readable
        for comp, name in jobs:
            done(comp, name, peer_row(name, comp, budget_s, work / name / comp.id, n_jobs))
    else:
        with ProcessPoolExecutor(args.parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(peer_row, name, comp, budget_s, work / name / comp.id, n_jobs): (comp, name)
                       for comp, name in jobs}
            for future in as_completed(futures):
                done(*futures[future], future.result())
    result = {"budget": args.budget, "budget_s": budget_s, "cores": cores(), "peers": names,
              **compare(ours, peers, comps)}
    print(format_comparison(result, names))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Competition mode, first step (issue 13, deliverable 4): the `competition` workload on one dev-suite competition
(iris-sepals, prepared with --only). The template runs and the agent's recomputed CV matches its printed line; a
fake CV line, bad out-of-fold predictions and an invalid submission are caught; `evolve kaggle run` drives a real
campaign (real git, SQLite MLflow, a subprocess a round) that keeps a valid submission from its first success on
and goes on past a tampering round; the private answers are never under the workspace or in a run's
environment; bad input is one line, exit 2, nothing created."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import runpy
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from evolve.campaign import runner as campaign
from evolve.campaign.spec import ObjectiveSpec, SpecError, load_spec
from evolve.competition.cv import LOG, cv_score, open_competition, printed_cv, recompute
from evolve.competition.grade import grade
from evolve.competition.run import RunRequest, campaign_spec
from evolve.competition.suite.prepare import prepare
from evolve.competition.templates import SklearnSolution, facts
from evolve.launch import sandbox
from evolve.records.ledger import Ledger
from evolve.records.objective import ObjectiveError, read_objective
from evolve.workloads import make_workload
from evolve.workloads.base import LAUNCH_KEYS
from evolve.workloads.competition import CompetitionOptions, CompetitionWorkload
from tests.bad_input import Case, cases_ids, run_case, write
from tests.competitions import make_competition
from tests.conftest import ROOT
from tests.test_campaign import round_counts

pytest.importorskip("sklearn", reason="the kaggle extra is not installed (pip install -e '.[kaggle]')")
FAST = "iris-sepals"  # 150 flowers, macro-F1: a round takes a few seconds
TEMPLATE = Path(__file__).resolve().parents[1] / "playbooks" / "templates" / "competition"
SCHEMA = dataclasses.asdict(SklearnSolution())
LIE = 'print(f"cv_score: {score(args.metric, ys, cells, targets)!r}")'


@pytest.fixture(scope="module")
def comp_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("suite") / "dev"
    prepare("dev", out, [FAST], say=lambda line: None)
    return out / FAST


@pytest.fixture(scope="module")
def template_run(comp_dir, tmp_path_factory) -> Path:
    """The template run by hand on the competition; its output saved where the launcher would put it."""
    ws, out = tmp_path_factory.mktemp("ws"), tmp_path_factory.mktemp("run")
    shutil.copytree(TEMPLATE, ws, dirs_exist_ok=True)
    r = subprocess.run([sys.executable, "solution.py", "--data", str(comp_dir / "public"), "--metric", "macro_f1",
                        "--out", str(out)], cwd=ws, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (out / LOG).write_text(r.stdout + r.stderr)
    return out


def copy_run(run: Path, tmp_path: Path) -> Path:
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def objective(comp_dir: Path) -> ObjectiveSpec:
    return ObjectiveSpec(metric="macro_f1", source="competition_cv", competition=str(comp_dir))


# --- the template and the agent's CV ------------------------------------------------------------------------------

def test_the_template_runs_and_the_agents_recomputed_cv_matches_its_printed_line(template_run, comp_dir):
    comp = open_competition(comp_dir)
    value = cv_score(comp, template_run)
    assert math.isclose(printed_cv(template_run / LOG), value, rel_tol=1e-9) and 0.3 < value <= 1
    assert read_objective(objective(comp_dir), template_run) == value  # the objective is the agent's number
    workload = CompetitionWorkload(CompetitionOptions(str(comp_dir)))
    assert workload.verify(template_run) == []
    assert grade(comp, template_run / "submission.csv").valid_submission  # and it grades against the answers
    assert "status: succeeded" in (template_run / LOG).read_text()


def test_the_lightgbm_family_runs_and_its_cv_is_the_agents_and_without_the_package_it_is_refused(comp_dir, tmp_path,
                                                                                              monkeypatch):
    pytest.importorskip("lightgbm", reason="the kaggle extra is not installed (pip install -e '.[kaggle]')")
    ws, out = tmp_path / "ws", tmp_path / "run"
    shutil.copytree(TEMPLATE, ws)
    (ws / "solution.yaml").write_text("model: lightgbm\ntrees: 60\n")
    r = subprocess.run([sys.executable, "solution.py", "--data", str(comp_dir / "public"), "--metric", "macro_f1",
                        "--out", str(out)], cwd=ws, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (out / LOG).write_text(r.stdout + r.stderr)
    value = cv_score(open_competition(comp_dir), out)
    assert math.isclose(printed_cv(out / LOG), value, rel_tol=1e-9) and 0.3 < value <= 1
    assert grade(open_competition(comp_dir), out / "submission.csv").valid_submission
    SklearnSolution(model="lightgbm")  # installed: accepted
    import importlib.util
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lightgbm" else True)
    with pytest.raises(ValueError, match=r"^model: 'lightgbm' needs the lightgbm package"):
        SklearnSolution(model="lightgbm")  # absent: never proposed, and a hand edit is one line


def test_a_fake_cv_line_a_missing_one_and_bad_oof_predictions_fail_the_objective(template_run, comp_dir, tmp_path):
    run = copy_run(template_run, tmp_path)
    honest = recompute(open_competition(comp_dir), run)
    log = (run / LOG).read_text()
    (run / LOG).write_text(log + "cv_score: 0.999\n")  # the last line counts: a solution that only prints a number
    with pytest.raises(ObjectiveError, match=rf"^printed cv_score 0\.999 but oof\.csv scores {honest:.10g}$"):
        read_objective(objective(comp_dir), run)
    (run / LOG).write_text(log.replace("cv_score:", "cv score:"))
    with pytest.raises(ObjectiveError, match=r"the run printed no `cv_score: <float>` line"):
        read_objective(objective(comp_dir), run)
    lines = (run / "oof.csv").read_text().splitlines()
    (run / "oof.csv").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ObjectiveError, match=r"oof\.csv: column 'id': no row for training id '\w+'"):
        read_objective(objective(comp_dir), run)
    (run / "oof.csv").unlink()  # nothing to score: no objective (a crash), and the workload says why
    assert read_objective(objective(comp_dir), run) is None
    assert CompetitionWorkload(CompetitionOptions(str(comp_dir))).verify(run)[0].startswith(
        f"{run / 'oof.csv'}: no such file; the solution must write its out-of-fold predictions")


def test_the_objective_is_what_oof_csv_scores_not_what_was_printed(template_run, comp_dir, tmp_path):
    run = copy_run(template_run, tmp_path)
    rows = [line.split(",") for line in (run / "oof.csv").read_text().splitlines()]
    (run / "oof.csv").write_text("\n".join(",".join(r if i == 0 else [r[0], "setosa"]) for i, r in enumerate(rows)))
    worse = recompute(open_competition(comp_dir), run)
    (run / LOG).write_text(f"cv_score: {worse!r}\n")
    assert read_objective(objective(comp_dir), run) == worse < cv_score(open_competition(comp_dir), template_run)


def test_an_invalid_submission_is_every_problem_validate_finds(template_run, comp_dir, tmp_path):
    run = copy_run(template_run, tmp_path)
    lines = (run / "submission.csv").read_text().splitlines()
    (run / "submission.csv").write_text("\n".join([lines[0] + ",extra", *(f"{x},1" for x in lines[1:-1])]) + "\n")
    problems = CompetitionWorkload(CompetitionOptions(str(comp_dir))).verify(run)
    assert any("column 'extra' is not one the competition grades" in p for p in problems), problems
    assert any("no row for test id" in p for p in problems), problems
    (run / "submission.csv").unlink()
    assert CompetitionWorkload(CompetitionOptions(str(comp_dir))).verify(run) == [
        f"{run / 'submission.csv'}: no such submission"]


@pytest.mark.slow
def test_the_template_handles_every_competition_of_the_dev_suite_within_a_minute(tmp_path):
    """Every metric kind: labels, grades, one and several probability columns, values (RMSLE's positive target),
    and the images laid out as MLE-bench lays them out."""
    prepare("dev", tmp_path / "dev", say=lambda line: None)
    shutil.copytree(TEMPLATE, tmp_path / "ws")
    for comp_dir in sorted((tmp_path / "dev").iterdir()):
        comp, out = open_competition(comp_dir), tmp_path / "runs" / comp_dir.name
        began = time.perf_counter()
        r = subprocess.run([sys.executable, "solution.py", "--data", str(comp.public), "--metric", comp.metric_name,
                            "--out", str(out)], cwd=tmp_path / "ws", capture_output=True, text=True, timeout=120)
        took = time.perf_counter() - began
        assert r.returncode == 0 and took < 60, (comp.id, took, r.stderr[-2000:])
        (out / LOG).write_text(r.stdout + r.stderr)
        cv_score(comp, out)  # the printed line agrees with the agent's score
        assert CompetitionWorkload(CompetitionOptions(str(comp_dir))).verify(out) == [], comp.id
        report = grade(comp, out / "submission.csv")
        assert report.valid_submission and report.above_median, (comp.id, report.score, report.median_threshold)


# --- the schema and the playbook ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("tree", "needle"), [
    ({"model": "svm"}, "model: 'svm' is not a model family"), ({"folds": 1}, "folds: 1 is out of range"),
    ({"trees": 1.5}, "trees: expected int"), ({"colour": "red"}, "colour"), ({"learning_rate": 0}, "learning_rate")])
def test_the_agent_refuses_a_solution_yaml_the_template_would_refuse(comp_dir, tree, needle):
    workload = CompetitionWorkload(CompetitionOptions(str(comp_dir)))
    with pytest.raises(ValueError, match=needle):
        workload.validate("solution.yaml", tree)
    workload.validate("solution.yaml", {"model": "knn", "neighbors": 3})  # a good edit passes


def test_the_template_and_the_schema_agree_and_the_template_refuses_a_bad_key_itself(comp_dir, tmp_path):
    assert yaml.safe_load((TEMPLATE / "solution.yaml").read_text()) == SCHEMA
    assert runpy.run_path(str(TEMPLATE / "solution.py"))["DEFAULTS"] == SCHEMA
    shutil.copytree(TEMPLATE, tmp_path / "ws")
    (tmp_path / "ws" / "solution.yaml").write_text("colour: red\n")
    r = subprocess.run([sys.executable, "solution.py", "--data", str(comp_dir / "public"), "--metric", "macro_f1",
                        "--out", str(tmp_path)], cwd=tmp_path / "ws", capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("error: solution.yaml: colour: unknown key"), r.stderr


def test_every_move_and_fix_sets_keys_of_the_schema_and_reads_keys_it_knows(comp_dir):
    workload = CompetitionWorkload(CompetitionOptions(str(comp_dir)))
    book, known = workload.playbook, set(SCHEMA) | set(facts(workload.comp))
    assert facts(workload.comp) == {"task": "classification", "inputs": "tabular"}
    for move in book.moves:
        assert set(move.set) <= set(SCHEMA) and set(move.when) <= known, move.id
    for kind, fixes in book.fixes.items():
        for fix in fixes.values():
            keys = LAUNCH_KEYS if fix.file else SCHEMA
            assert set(fix.set) <= set(keys) and set(fix.requires) <= known | set(LAUNCH_KEYS), (kind, fix.id)
    back = {k: v for k, v in SCHEMA.items() if k != "seed"}
    assert book.fixes["config_error"]["fix_key"].set == back == book.fixes["crash"]["defaults"].set


# --- the spec: what the workload insists on -----------------------------------------------------------------------

def write_spec(tmp_path: Path, comp_dir: Path, change=None, template: Path = TEMPLATE) -> Path:
    name, spec = campaign_spec(RunRequest(str(comp_dir), "1h", rounds=3, workspace=str(tmp_path / "ws")),
                               open_competition(comp_dir), tmp_path / "home")
    spec["workspace"]["template"] = str(template)
    if change:
        change(spec)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize(("change", "needle"), [
    (lambda s: s["objective"].update(source="file", path="score.json", competition=""),
     "objective.source: 'file'; a competition's objective is competition_cv"),
    (lambda s: s["objective"].update(mode="min"),
     "objective.mode: 'min'; macro_f1 is higher is better, so mode is max"),
    (lambda s: s["objective"].update(metric="accuracy"), "competition.yaml says 'macro_f1'"),
    (lambda s: s["launch"].update(command=s["launch"]["command"].replace("/public", "/private")),
     "launch.command: names the competition's private folder"),
    (lambda s: s["launch"].update(env={"ANSWERS": s["workload"]["options"]["competition"] + "/private/answers.csv"}),
     "launch.env.ANSWERS: names the competition's private folder")])
def test_a_spec_that_would_let_the_solution_grade_itself_or_see_the_answers_is_refused(tmp_path, comp_dir, change,
                                                                                        needle):
    with pytest.raises(SpecError, match=needle):
        make_workload(load_spec(write_spec(tmp_path, comp_dir, change)))


def test_the_written_spec_gives_the_run_only_the_public_folder(tmp_path, comp_dir):
    spec = load_spec(write_spec(tmp_path, comp_dir))
    make_workload(spec)  # the workload accepts it
    assert f"--data {comp_dir / 'public'} --metric macro_f1" in spec.launch.command
    assert "private" not in json.dumps(dataclasses.asdict(spec))
    assert (spec.objective.mode, spec.budget.wall_s, spec.launch.timeout_s) == ("max", 3600.0, 600.0)


# --- campaigns ----------------------------------------------------------------------------------------------------

def private_bytes(comp_dir: Path) -> list[bytes]:
    return [p.read_bytes() for p in (comp_dir / "private").iterdir()]


def assert_answers_not_in_workspace(ws: Path, comp_dir: Path) -> None:
    secret = private_bytes(comp_dir)
    for path in (p for p in ws.rglob("*") if p.is_file() and ".git" not in p.parts):
        assert path.name != "answers.csv" and path.read_bytes() not in secret, path
        assert str(comp_dir / "private") not in path.read_text(errors="replace"), path


@pytest.mark.slow
def test_kaggle_run_keeps_a_valid_submission_from_the_first_success_on(tmp_path, comp_dir, capsys, monkeypatch):
    from evolve.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(["kaggle", "run", str(comp_dir), "--budget", "1h", "--rounds", "3", "--home", str(tmp_path / "home"),
                 "--workspace", str(tmp_path / "ws")])
    out = capsys.readouterr().out
    assert code == 0, out
    paths = campaign.campaign_paths(FAST, tmp_path / "home")
    records = Ledger(paths.ledger).records()
    assert [r.round for r in records] == [1, 2, 3] and records[0].verdict == "keep", [r.kind for r in records]
    assert round_counts(tmp_path, FAST) == {k: [1, 2, 3] for k in ("ledger", "memory", "mlflow", "git")}
    comp, best = open_competition(comp_dir), 0
    for r in records:  # from the first success on, the best round's submission is valid, graded by CV only
        if r.verdict == "keep":
            best = r.round
            assert r.objective == cv_score(comp, paths.run_dir(r.round))
        assert best and grade(comp, paths.run_dir(best) / "submission.csv").valid_submission
    assert f"Best submission: {paths.run_dir(best) / 'submission.csv'}" in out.splitlines()[-1]
    assert [c["file"] for r in records[1:] for c in r.proposal["changes"]] == ["solution.yaml"] * 2
    assert (tmp_path / "home" / "kaggle" / f"{FAST}.yaml").is_file() and (tmp_path / "home" / "kaggle" /
                                                                          f"{FAST}.md").is_file()
    assert_answers_not_in_workspace(tmp_path / "ws" / FAST, comp_dir)
    resumed = io.StringIO()  # a campaign like any other: `evolve campaign resume NAME` finds it
    campaign.resume(FAST, home=tmp_path / "home", stream=resumed)
    assert "already finished: round budget spent" in resumed.getvalue()


TAMPER = '''config_env = {k: v for k, v in os.environ.items()}
    (out / "env.json").write_text(__import__("json").dumps(config_env))
    try:  # the answers beside the public data, by absolute path, as a solution that guesses the layout would look
        seen = sorted(p.name for p in (__import__("pathlib").Path(args.data).resolve().parent / "private").iterdir())
    except OSError:
        seen = None
    (out / "peek.json").write_text(__import__("json").dumps(seen))
    honest = score(args.metric, ys, cells, targets)
    if config.model == "random_forest":  # an invalid submission: a test row dropped
        lines = (out / "submission.csv").read_text().splitlines()
        (out / "submission.csv").write_text("\\n".join(lines[:-1]) + "\\n")
    print(f"cv_score: {honest + (0.2 if config.model == 'linear' else 0.0)!r}")'''


def test_a_fake_cv_and_an_invalid_submission_are_caught_and_the_campaign_goes_on(tmp_path, comp_dir):
    """Three real rounds (about 15 s): the tampering template lies about its CV once the model is linear and
    drops a test row once it is a random forest."""
    template = tmp_path / "tampering"
    shutil.copytree(TEMPLATE, template)
    code = (template / "solution.py").read_text()
    assert code.count(LIE) == 1
    (template / "solution.py").write_text(code.replace(LIE, TAMPER))
    spec = write_spec(tmp_path, comp_dir, template=template)
    out = io.StringIO()
    campaign.start(spec, home=tmp_path / "home", stream=out)
    paths = campaign.campaign_paths(FAST, tmp_path / "home")
    records = Ledger(paths.ledger).records()
    assert [(r.proposal["id"], r.status, r.verdict) for r in records] == [
        ("baseline", "succeeded", "keep"), ("linear_model", "failed", "crash"), ("random_forest", "failed", "crash")]
    fake = json.loads((paths.run_dir(2) / "diagnosis.json").read_text())
    assert "printed cv_score" in fake["evidence"][0]["text"] and "but oof.csv scores" in fake["evidence"][0]["text"]
    invalid = json.loads((paths.run_dir(3) / "diagnosis.json").read_text())
    assert invalid["kind"] == "crash" and invalid["evidence"][0]["source"] == "competition check"
    assert "no row for test id" in invalid["evidence"][0]["text"]
    private = str(comp_dir / "private")
    for n in (1, 2, 3):  # the run's environment names no private path
        env = json.loads((paths.run_dir(n) / "env.json").read_text())
        assert not [k for k, v in env.items() if private in v or "answers" in v.lower()], env
    assert_answers_not_in_workspace(tmp_path / "ws" / FAST, comp_dir)
    seen = [json.loads((paths.run_dir(n) / "peek.json").read_text()) for n in (1, 2, 3)]
    if sandbox.detect().namespace:  # the private folder is an empty tmpfs in the run's mount namespace
        assert seen == [[], [], []], seen
    else:  # nothing to enforce it with here: the product must say so, and the answers were still never passed
        assert any("stays readable" in line for line in out.getvalue().splitlines())


# --- bad input ----------------------------------------------------------------------------------------------------

def _tiny(t: Path, yaml_text: str | None = "metric: accuracy\n", layout: str = "flat") -> None:
    make_competition(t / "tiny", [["a", 1], ["b", 0]], yaml=yaml_text, layout=layout)


RUN = ["kaggle", "run", "{tmp}/tiny", "--budget", "1h"]
BAD = [
    Case("run-no-competition", ["kaggle", "run", "{tmp}/nope", "--budget", "1h"], "nope: no such competition folder"),
    Case("run-unknown-metric", [*RUN, "--metric", "bogus"], "'bogus' is not a metric",
         setup=lambda t: _tiny(t, None, "mle-bench")),
    Case("run-unknown-metric-in-yaml", RUN, "metric: 'bogus' is not a metric",
         setup=lambda t: _tiny(t, "metric: bogus\n")),
    Case("run-no-metric", RUN, "no competition.yaml, so no metric", setup=lambda t: _tiny(t, None, "mle-bench")),
    Case("run-budget-unparseable", ["kaggle", "run", "{tmp}/tiny", "--budget", "soon"],
         "--budget 'soon': not a duration", setup=_tiny),
    Case("run-budget-zero", ["kaggle", "run", "{tmp}/tiny", "--budget", "0h"], "--budget '0h': must be longer than 0 s",
         setup=_tiny),
    Case("run-no-budget", ["kaggle", "run", "{tmp}/tiny"], "the following arguments are required: --budget",
         setup=_tiny),
    Case("run-unknown-brain", [*RUN, "--brain", "gpt"], "--brain 'gpt': not a brain", setup=_tiny),
    Case("run-bad-name", [*RUN, "--name", "../x"], "--name: '../x' must match", setup=_tiny),
    Case("run-no-train-set", RUN, "tiny/public: no train.csv or train_labels.csv", setup=_tiny),
    Case("run-empty-train-set", RUN, "train.csv: no rows; a solution needs training rows to learn from",
         setup=lambda t: (_tiny(t), write(t / "tiny" / "public" / "train.csv", "id,x,y\n"))),
    Case("run-no-test-ids", RUN, "sample_submission.csv: no rows; the submission needs the test ids",
         setup=lambda t: (_tiny(t), write(t / "tiny" / "public" / "train.csv", "id,x,y\na,1,1\n"),
                          write(t / "tiny" / "public" / "sample_submission.csv", "id,y\n"))),
    Case("run-campaign-exists", RUN, "campaign 'tiny' exists",
         setup=lambda t: (_tiny(t), write(t / ".evolve" / "kaggle" / "tiny.yaml", "name: tiny\n"))),
]


@pytest.mark.parametrize("case", BAD, ids=cases_ids(BAD))
def test_bad_input(case, tmp_path, monkeypatch):
    run_case(case, tmp_path, monkeypatch)


def test_a_start_that_fails_leaves_no_spec_behind(tmp_path, monkeypatch, capsys):
    from evolve.cli import main

    _tiny(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/no/such/folder/mlflow.db")
    assert main([*[a.replace("{tmp}", str(tmp_path)) for a in RUN]]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / ".evolve").exists() and not (tmp_path / "workspaces").exists()
    assert os.listdir(tmp_path) == ["tiny"]


@pytest.mark.parametrize(("fields", "needle"), [
    ({"source": "competition_cv"}, "objective.competition: required when source is 'competition_cv'"),
    ({"competition": "comps/x"}, "objective.competition: only used with source: competition_cv"),
])
def test_the_objective_names_a_competition_exactly_when_its_source_is_competition_cv(fields, needle):
    with pytest.raises(SpecError, match=needle):
        ObjectiveSpec(metric="macro_f1", **fields)


@pytest.mark.slow
def test_kill_9_during_a_solution_run_then_resume_keeps_the_tree_ledger_and_mlflow_in_step(tmp_path, comp_dir):
    """`kaggle run` killed with SIGKILL while round 2's solution runs; `campaign resume` finishes the same
    campaign: every round once in the ledger, the memory file, MLflow and git, and the best submission valid."""
    home = tmp_path / "home"
    agent = subprocess.Popen([sys.executable, "-m", "evolve", "kaggle", "run", str(comp_dir), "--budget", "1h",
                              "--rounds", "3", "--home", str(home), "--workspace", str(tmp_path / "ws")],
                             cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pid_file = campaign.campaign_paths(FAST, home).run_dir(2) / "launch.pid"
    deadline = time.monotonic() + 120
    while not pid_file.exists():  # written when round 2's solution starts, removed when it ends
        assert agent.poll() is None, agent.stdout.read()
        assert time.monotonic() < deadline, "round 2 never started"
        time.sleep(0.02)
    agent.kill()
    agent.wait()
    resumed = subprocess.run([sys.executable, "-m", "evolve", "campaign", "--home", str(home), "resume", FAST],
                             cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert round_counts(tmp_path, FAST) == {k: [1, 2, 3] for k in ("ledger", "memory", "mlflow", "git")}
    paths = campaign.campaign_paths(FAST, home)
    records = Ledger(paths.ledger).records()
    best = max((r for r in records if r.verdict == "keep"), key=lambda r: r.round)
    assert grade(open_competition(comp_dir), paths.run_dir(best.round) / "submission.csv").valid_submission
    assert "Best submission:" in resumed.stdout.strip().splitlines()[-1]

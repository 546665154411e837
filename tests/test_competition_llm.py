"""The LLM brain in competition mode: it writes free-form solutions and debugs them from the traceback, within
the tree search. A scripted OpenAI-compatible server (a real HTTP server, the real openai client: the one
mock, for the hosted model) answers a real campaign on a dev-suite competition: round 2 drafts a solution.py
of its own (a nearest-centroid model, not the template's), round 3 drafts one that crashes, round 4 is the
debug of round 3, made on its commit, and the prompt it got held the phase and the exception."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pytest
import yaml

from evolve.campaign import runner as campaign
from evolve.competition.cv import open_competition
from evolve.competition.run import RunRequest, campaign_spec
from evolve.competition.suite.prepare import prepare
from evolve.records.ledger import Ledger
from tests.test_competition_mode import FAST
from tests.test_llm_brain import autolog_off, llm_options, server  # noqa: F401 (fixtures)

pytest.importorskip("sklearn", reason="the kaggle extra is not installed (pip install -e '.[kaggle]')")

CENTROIDS = textwrap.dedent('''\
    """A free-form solution: the nearest class centroid, 5-fold CV."""
    import argparse, csv, os
    import numpy as np
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.neighbors import NearestCentroid

    p = argparse.ArgumentParser()
    p.add_argument("--data"); p.add_argument("--metric"); p.add_argument("--out")
    a = p.parse_args()
    read = lambda name: list(csv.reader(open(os.path.join(a.data, name))))
    train, test = read("train.csv"), read("test.csv")
    X = np.array([r[1:-1] for r in train[1:]], float); y = np.array([r[-1] for r in train[1:]])
    T = np.array([r[1:] for r in test[1:]], float)
    oof = np.empty(len(y), dtype=object)
    for fit, held in StratifiedKFold(5, shuffle=True, random_state=0).split(X, y):
        oof[held] = NearestCentroid().fit(X[fit], y[fit]).predict(X[held])
    pred = NearestCentroid().fit(X, y).predict(T)
    for name, ids, values in (("oof.csv", [r[0] for r in train[1:]], oof),
                              ("submission.csv", [r[0] for r in test[1:]], pred)):
        with open(os.path.join(a.out, name), "w", newline="") as f:
            csv.writer(f, lineterminator="\\n").writerows([["id", "species"], *zip(ids, values)])
    print("model: nearest centroid")
    print(f"cv_score: {f1_score(y, list(oof), average='macro')!r}")
''')
BROKEN = CENTROIDS.replace('X = np.array([r[1:-1]', 'X = np.array([r[1:]')  # the label read as a feature


def whole_file(text: str, id_: str) -> dict:
    return {"id": id_, "hypothesis": "A solution of my own.", "expected": "a valid submission",
            "changes": [{"file": "solution.py", "key": "", "value": "", "patch": text}]}


@pytest.mark.slow
def test_the_llm_brain_drafts_free_form_solutions_and_debugs_one_from_its_traceback(tmp_path, server, autolog_off):  # noqa: F811
    out = tmp_path / "suite"
    prepare("dev", out, [FAST], say=lambda line: None)
    comp = out / FAST
    script, url = server([("json", whole_file(CENTROIDS, "centroids")), ("json", whole_file(BROKEN, "centroids_v2")),
                          ("json", whole_file(CENTROIDS, "fix_feature_columns"))])
    name, spec = campaign_spec(RunRequest(str(comp), "1h", brain="openai", rounds=4, drafts=3,
                                          workspace=str(tmp_path / "ws")), open_competition(comp), tmp_path / "home")
    assert spec["workspace"]["editable"] == ["solution.yaml", "solution.py"]
    spec["brain"]["options"] = llm_options(url)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    final = campaign.start(path, home=tmp_path / "home", stream=io.StringIO())
    paths = campaign.campaign_paths(name, tmp_path / "home")
    records = Ledger(paths.ledger).records()
    assert [(r.round, r.proposal["phase"], r.proposal["parent"], r.status) for r in records] == [
        (1, "", 0, "succeeded"), (2, "draft", 1, "succeeded"), (3, "draft", 1, "failed"), (4, "debug", 3, "succeeded")]
    assert all(r.proposal["source"] == "openai/scripted" for r in records[1:]), [r.proposal for r in records]
    assert "model: nearest centroid" in (paths.run_dir(2) / "launch.log").read_text()
    prompts = [json.dumps(request["messages"]) for request in script.planning_requests]
    assert "DRAFT a new solution" in prompts[0] and "DRAFT a new solution" in prompts[1]
    assert "DEBUG it" in prompts[2] and "round 3, a solution that FAILED" in prompts[2]
    assert "ValueError" in prompts[2] or "could not convert" in prompts[2], prompts[2]  # the traceback's line
    assert final["best_round"] in (1, 2, 4) and Path(paths.run_dir(final["best_round"]) / "submission.csv").is_file()

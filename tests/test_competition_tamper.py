"""A solution that tries to change what grades it (issue 13's tamper tests): the competition's public data and
competition.yaml, the agent's own code that recomputes the CV, and the Python it runs on. In the run's mount
namespace each is read-only, so every write fails and nothing changes; without a namespace the agent's check
after the run catches the changed data, records the round as a crash and the campaign goes on."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

import evolve
from evolve.campaign import runner as campaign
from evolve.competition.suite.prepare import prepare
from evolve.launch import sandbox
from evolve.records.ledger import Ledger
from evolve.workloads.competition import changed_files, fingerprint
from tests.test_competition_mode import FAST, LIE, TEMPLATE, write_spec

pytest.importorskip("sklearn", reason="the kaggle extra is not installed (pip install -e '.[kaggle]')")
GRADER = Path(evolve.__file__).resolve().parent / "competition" / "cv.py"
# a file of the Python the agent runs on (a venv's own; the interpreter's os.py outside one)
PYTHON = next(p for p in (Path(sys.prefix) / "pyvenv.cfg", Path(os.__file__)) if p.is_file())


@pytest.fixture(scope="module")
def comp_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("suite") / "dev"
    prepare("dev", out, [FAST], say=lambda line: None)
    return out / FAST


def tampering_template(tmp_path: Path, targets: dict[str, str]) -> Path:
    """The template, with a solution that first writes each target path and records how each attempt ended
    in tamper.json. A file that exists is opened for update and written back as it was (the labels could as
    well have been rewritten to match the predictions; this keeps the agent's own files intact should the
    containment fail); one that does not is created."""
    attempt = f"""import errno as _errno, json as _json, os as _os
    tried = {{}}
    for _name, _path in {targets!r}.items():
        try:
            if _os.path.exists(_path):
                with open(_path, "r+b") as _f:
                    _body = _f.read()
                    _f.seek(0)
                    _f.write(_body)
            else:
                open(_path, "x").close()
            tried[_name] = "written"
        except OSError as _e:
            tried[_name] = _errno.errorcode.get(_e.errno, str(_e.errno))
    (out / "tamper.json").write_text(_json.dumps(tried))
    {LIE}"""
    template = tmp_path / "tampering"
    shutil.copytree(TEMPLATE, template)
    code = (template / "solution.py").read_text()
    assert code.count(LIE) == 1
    (template / "solution.py").write_text(code.replace(LIE, attempt))
    return template


def run(tmp_path: Path, comp: Path, template: Path, isolation: str = "auto") -> tuple[list, campaign.CampaignPaths,
                                                                                          str]:
    def change(spec: dict) -> None:
        spec["budget"]["rounds"] = 2
        spec["launch"]["isolation"] = isolation

    out = io.StringIO()
    campaign.start(write_spec(tmp_path, comp, change, template), home=tmp_path / "home", stream=out)
    paths = campaign.campaign_paths(FAST, tmp_path / "home")
    return Ledger(paths.ledger).records(), paths, out.getvalue()


@pytest.mark.skipif(not sandbox.detect().namespace, reason="no PID + mount namespace on this machine")
def test_a_solution_cannot_write_the_data_the_grader_or_the_python_that_grades_it(tmp_path, comp_dir):
    comp = tmp_path / "comp"
    shutil.copytree(comp_dir, comp)
    before = fingerprint(comp, comp / "private")
    grader = GRADER.read_bytes()
    template = tampering_template(tmp_path, {"data": str(comp / "public" / "train.csv"),
                                             "yaml": str(comp / "competition.yaml"),
                                             "new file": str(comp / "public" / "extra.csv"),
                                             "grader": str(GRADER), "python": str(PYTHON)})
    records, paths, out = run(tmp_path, comp, template)
    assert [(r.status, r.verdict) for r in records] == [("succeeded", "keep"), ("succeeded", records[1].verdict)]
    for n in (1, 2):
        tried = json.loads((paths.run_dir(n) / "tamper.json").read_text())
        assert tried == {"data": "EROFS", "yaml": "EROFS", "new file": "EROFS", "grader": "EROFS",
                         "python": "EROFS"}, tried
    assert changed_files(comp, comp / "private", before) == [] and GRADER.read_bytes() == grader


@pytest.mark.slow
def test_without_a_namespace_a_solution_that_changes_the_data_is_caught_and_the_campaign_goes_on(tmp_path, comp_dir):
    comp = tmp_path / "comp"
    shutil.copytree(comp_dir, comp)
    train = comp / "public" / "train.csv"
    template = tampering_template(tmp_path, {"data": str(train)})
    records, paths, out = run(tmp_path, comp, template, isolation="off")
    assert "stays writable by the run" in out and str(comp) in out
    assert [(r.status, r.kind, r.verdict) for r in records] == [("failed", "crash", "crash")] * 2
    evidence = json.loads((paths.run_dir(1) / "diagnosis.json").read_text())["evidence"][0]["text"]
    assert evidence.startswith(f"{train}: the run changed the competition's data"), evidence
    assert json.loads((paths.run_dir(1) / "tamper.json").read_text()) == {"data": "written"}


def test_a_submission_linked_to_the_answers_is_refused(tmp_path, comp_dir):
    """The agent reads a run's files outside the run's namespace, where a link into private/ would resolve."""
    from evolve.workloads.competition import CompetitionOptions, CompetitionWorkload

    workload = CompetitionWorkload(CompetitionOptions(str(comp_dir)))
    run = tmp_path / "run"
    run.mkdir()
    (run / "oof.csv").write_text("id,species\n")
    answers = next((comp_dir / "private").iterdir())
    (run / "submission.csv").symlink_to(answers)
    assert workload.verify(run) == [f"{run / 'submission.csv'}: a symbolic link; the solution must write the file "
                                    "itself"]
    workload.prepare_run(tmp_path / "next", {"blend": 1}, [run])
    assert not (tmp_path / "next" / "pool").exists()

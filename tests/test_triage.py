"""Triage: foreign logs, trainer run directories and MLflow runs become the right Diagnosis."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from evolve.triage import KINDS, TRAINER_KINDS, TargetNotFound, corpus, format_text, load_playbook, series, triage
from evolve.triage import scan as logscan
from evolve.triage.regexes import required_literals
from evolve.triage.scan import LogScan
from evolve.workloads import for_framework
from tests.conftest import ROOT, TEMPLATES, run_trainer
from trainer.health import FAILURE_KINDS

LOGS = ROOT / "tests" / "fixtures" / "logs"
EXPECTED = yaml.safe_load((LOGS / "expected.yaml").read_text())
PYTHON = [sys.executable, "-m", "evolve", "triage"]


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*PYTHON, *args], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


# ------------------------------------------------------------------------------------- playbook

def test_playbook_has_exactly_the_closed_vocabulary_and_covers_the_trainers_kinds():
    book = load_playbook()
    assert sorted(book.kinds) == sorted(KINDS)
    assert set(FAILURE_KINDS) == set(TRAINER_KINDS)


@pytest.mark.parametrize("edit, named", [
    (lambda b: b["kinds"].update(gpu_on_fire=b["kinds"]["crash"]), "gpu_on_fire"),
    (lambda b: b["kinds"]["nan_loss"]["signatures"][0].update(wieght=2), "wieght"),
    (lambda b: b["kinds"]["nan_loss"]["remedies"][0]["advice"].update(jax="x"), "jax"),
    (lambda b: b["kinds"].pop("disk_full"), "disk_full"),
    (lambda b: b["kinds"]["timeout"]["signatures"].append({"regex": "(unclosed", "weight": 1}), "(unclosed"),
    (lambda b: b["kinds"]["grad_explosion"]["metric_rules"][0].update(value="1.0e4"), "metric_rules.value"),
    (lambda b: b["kinds"]["nan_loss"].update(after=["kl_blew_up"]), "kinds.nan_loss.after"),
])
def test_playbook_loading_is_strict_and_names_the_offending_key(tmp_path, edit, named):
    book = yaml.safe_load((ROOT / "playbooks" / "triage.yaml").read_text())
    edit(book)
    path = tmp_path / "triage.yaml"
    path.write_text(yaml.safe_dump(book))
    with pytest.raises(ValueError, match=re.escape(named)):
        load_playbook(path)


# ------------------------------------------------------------------------------------- foreign logs

def test_fixtures_are_realistic_excerpts_and_all_have_an_expectation():
    logs = sorted(p.name for p in LOGS.glob("*.log"))
    assert logs == sorted(EXPECTED)
    assert sum(e["kind"] != "healthy" for e in EXPECTED.values()) >= 12
    for name in logs:
        assert 20 <= len((LOGS / name).read_text().splitlines()) <= 80, name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_foreign_log_gets_its_kind_framework_and_the_line_that_shows_it(name):
    want = EXPECTED[name]
    d = triage(str(LOGS / name))
    assert (d.kind, d.framework) == (want["kind"], want["framework"])
    top = d.evidence[0]
    assert top.source == str(LOGS / name)
    line = (LOGS / name).read_text().splitlines()[top.line - 1]
    assert want["evidence"] in line  # the evidence points at the line that really shows the failure
    assert 0 < d.confidence < 1 and d.root_cause
    if d.kind != "healthy":
        assert d.remedies and any(want["framework"] in r.advice for r in d.remedies)


def test_a_log_without_any_evidence_is_unknown_never_healthy(tmp_path):
    """`healthy` needs positive evidence (a succeeded status, a clean finish marker); silence is not one."""
    log = tmp_path / "quiet.log"
    log.write_text("".join(f"epoch {i} done\n" for i in range(50)))
    d = triage(str(log))
    assert d.kind == "unknown" and d.confidence < 0.5 and [r.id for r in d.remedies] == ["read_the_lines"]


def test_scanner_finds_the_same_first_lines_as_a_naive_per_line_search_across_chunk_boundaries(monkeypatch):
    monkeypatch.setattr(logscan, "CHUNK", 97)  # forces lines across chunk edges and the carry path
    book = load_playbook()
    for path in sorted(LOGS.glob("*.log")):
        scan = book.scanner()
        logscan.scan_path(scan, path)
        naive = {}
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for i, sig in enumerate(book.signatures):
                if i not in naive and sig.pattern.search(line):
                    naive[i] = number
        assert {i: h.line for i, h in scan.hits.items()} == naive, path.name
        assert scan.lines == len(path.read_text().splitlines())


def test_the_shipped_regex_index_is_fresh_and_agrees_with_the_analysis():
    """playbooks/triage_index.json spares every process the regex analysis; stale, it only costs time, but
    a stale entry would be a wrong prefilter, so it must match what `analyse` says today."""
    from evolve.triage.playbook import INDEX, regexes
    from evolve.triage.regexes import analyse

    index = json.loads(INDEX.read_text())
    shipped = regexes(load_playbook())
    stale = [r for r in shipped if r not in index]
    assert not stale, f"{len(stale)} regexes missing: run .venv/bin/python scripts/build_triage_index.py"
    assert set(index) == set(shipped), "index holds regexes the playbook no longer has: rebuild it"
    for regex in shipped[::25]:  # a sample: analysing all 700+ is the second this index saves
        assert tuple(index[regex]) == analyse(regex), regex


def test_a_relaxed_regex_never_forbids_what_the_regex_allows():
    """Regression: `(?!1(\\.0*)?)` relaxed to `(?!\\d...)` forbade every digit, so the scanner skipped the
    lines the real regex matched. A negative lookaround is dropped from the relaxation instead."""
    from evolve.triage.regexes import relax
    regex = r"reward (?!1(\.0*)?\b)\d+(\.\d+)? for all"
    relaxed = re.compile(relax(regex))
    for line in ("reward 0.43 for all 8", "reward 2 for all", "reward 10 for all"):
        assert re.search(regex, line) and relaxed.search(line), line
    assert relax(r"abc(?<!x1)d5") == r"abcd\d"


def test_every_shipped_relaxation_matches_every_corpus_line_its_regex_matches():
    book = load_playbook()
    lines = {line for case in corpus.load("dev") for line in case.text.splitlines()}
    for sig in book.signatures:
        if sig.relaxed is None:
            continue
        lost = [line for line in lines if sig.pattern.search(line) and not sig.relaxed.search(line.translate(_ZERO))]
        assert not lost, (sig.regex, lost[:2])


_ZERO = str.maketrans("123456789", "000000000")


def test_a_regex_outside_the_index_is_compiled_as_it_loads(tmp_path):
    """Lazy compiling must not defer a bad regex in an edited playbook to the middle of a scan."""
    book = yaml.safe_load((ROOT / "playbooks" / "triage.yaml").read_text())
    book["kinds"]["timeout"]["signatures"].append({"regex": "(?<=a+)b", "weight": 1})  # parses, cannot compile
    path = tmp_path / "triage.yaml"
    path.write_text(yaml.safe_dump(book))
    with pytest.raises(ValueError, match=re.escape("(?<=a+)b")):
        load_playbook(path)


@pytest.mark.parametrize("regex, text", [
    (r"(loss|gradient norm) is (?P<v>nan|-?inf) at step", "LOSS IS NAN AT STEP"),
    (r"mat1 and mat2 shapes cannot be multiplied", "mat1 and mat2 shapes cannot be multiplied"),
    (r"Watchdog caught collective operation timeout", "[Rank 3] Watchdog caught collective operation timeout:"),
    # one CJK character is 3 bytes, a usable literal: counted as one character it left the regex unfiltered
    (r"(?i)(box|框)[^\n]{0,40}(\bxywh\b|\[\s*x\s*,)", "预测框的格式是 xywh"),
])
def test_required_literals_are_a_superset_test(regex, text):
    lits = required_literals(regex)
    assert lits and any(lit in text.lower().encode() for lit in lits)


def test_metric_series_keep_bounded_summaries_of_any_length():
    scan = LogScan([], ["kl"])
    for i in range(10_000):
        scan.add_metric("kl", float(i), i + 1, "x")
    s = scan.series["kl"]
    assert (s.n, s.max, s.max_line, len(s.head), len(s.tail)) == (10_000, 9999.0, 10_000, series.HEAD, series.HEAD)


# ------------------------------------------------------------------------------------- run directories

def _run_dir(tmp_path: Path, status: dict, metrics: list[dict], log: str = "") -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "status.json").write_text(json.dumps(status))
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    (run / "stdout.log").write_text(log)
    return run


def test_run_dir_status_verdict_is_authoritative_and_its_step_reaches_the_root_cause(tmp_path):
    log = ("[rl     7] train/loss=nan\n---\nstatus: failed\nfailure_kind: nan_loss\n"
           "failure_message: loss is nan at step 7\n")
    run = _run_dir(tmp_path, {"status": "failed", "failure": {"kind": "nan_loss", "step": 7,
                                                              "message": "loss is nan at step 7"}, "summary": {}},
                   [{"step": 6, "train/loss": 0.3}, {"step": 7, "train/loss": "nan"}], log)
    d = triage(str(run))
    assert (d.kind, d.confidence, d.framework) == ("nan_loss", 1.0, "evolve")
    assert str(d.evidence[0]).startswith(f"{run / 'status.json'}: ") and "step 7" in d.evidence[0].text
    assert any(e.source == str(run / "stdout.log") and e.line == 4 for e in d.evidence)  # failure_kind line
    assert "step 7" in d.root_cause
    assert d.remedies[0].id == "advantage_epsilon"
    assert "--set rl.adv_eps=0.0001" in _cli_text(d)  # how the in-repo trainer's workload does it


def test_succeeded_run_whose_reward_rises_while_eval_falls_is_reward_hacking(tmp_path):
    metrics = [{"step": s, "train/reward": 0.2 + 0.05 * s} for s in range(12)]
    metrics += [{"step": s, "eval/accuracy": 0.6 - 0.05 * s} for s in range(0, 12, 2)]
    run = _run_dir(tmp_path, {"status": "succeeded", "failure": None, "summary": {}}, metrics)
    d = triage(str(run))
    assert d.kind == "reward_hacking" and 0.5 < d.confidence < 1
    assert d.evidence[-1].source == str(run / "metrics.jsonl") and "eval/accuracy fell" in d.evidence[-1].text
    assert "train/reward rose" in d.root_cause


def test_succeeded_run_with_improving_metrics_is_healthy(tmp_path):
    metrics = [{"step": s, "train/reward": 0.2 + 0.05 * s, "eval/accuracy": 0.3 + 0.04 * s} for s in range(10)]
    run = _run_dir(tmp_path, {"status": "succeeded", "failure": None, "summary": {}}, metrics,
                   "---\nstatus: succeeded\nfailure_kind: none\n")
    d = triage(str(run))
    assert (d.kind, d.confidence, d.remedies) == ("healthy", 1.0, [])


def test_run_dir_without_status_is_judged_by_its_metrics(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    norms = [0.5, 3.0, 80.0, 2.0e3, 6.0e4, 9.0e5]
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "train/grad_norm": g}) + "\n"
                                               for s, g in enumerate(norms)))
    d = triage(str(run))
    assert d.kind == "grad_explosion" and d.confidence < 1
    assert (d.evidence[0].source, d.evidence[0].line) == (str(run / "metrics.jsonl"), 6)  # the 9e5 record
    assert "9e+05" in d.root_cause or "9e+05" in d.evidence[0].text


# ------------------------------------------------------------------------------------- CLI

def test_cli_json_has_the_diagnosis_contract():
    proc = _cli(str(LOGS / "torchrun_nccl_timeout.log"), "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert {"kind", "confidence", "evidence", "root_cause", "remedies", "framework"} <= d.keys()
    assert d["kind"] == "dist_timeout" and isinstance(d["confidence"], float)
    assert d["evidence"][0]["line"] == 13 and d["evidence"][0]["excerpt"].startswith(str(LOGS / "torchrun"))
    assert all({"id", "text", "advice"} == r.keys() for r in d["remedies"])  # what a fix sets is the workload's
    assert "NCCL_DEBUG=INFO" in d["remedies"][0]["advice"]["torch.distributed"]
    assert "ALLREDUCE" in d["root_cause"] and "600085" in d["root_cause"]


def test_cli_missing_target_is_one_line_and_exit_2(tmp_path):
    proc = _cli(str(tmp_path / "nope.log"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "nope.log" in proc.stderr and "Traceback" not in proc.stderr


def test_triage_command_does_not_import_torch():
    code = ("import sys; from evolve.cli import main; "
            f"rc = main(['triage', {str(LOGS / 'verl_cuda_oom.log')!r}]); print('torch' in sys.modules, rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "False 0", proc.stderr


# ------------------------------------------------------------------------------------- MLflow

def test_mlflow_run_is_triaged_from_its_tags_metrics_and_log_artifact(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("triage")).info.run_id
    for step, loss in enumerate([0.9, 0.7, math.nan]):
        client.log_metric(run_id, "train/loss", loss, step=step)
    log = tmp_path / "stdout.log"
    log.write_text("[rl     2] train/loss=nan\n---\nstatus: failed\nfailure_kind: nan_loss\n"
                   "failure_message: loss is nan at step 2\n")
    client.log_artifact(run_id, str(log))
    client.set_tag(run_id, "status", "failed")
    client.set_tag(run_id, "failure_kind", "nan_loss")
    client.set_terminated(run_id, "FAILED")
    d = triage(f"mlflow:{run_id}")
    assert (d.kind, d.confidence, d.framework) == ("nan_loss", 1.0, "evolve")
    assert any(e.source == f"mlflow:{run_id}/stdout.log" and e.line == 5 for e in d.evidence)
    assert any("train/loss is non-finite" in e.text for e in d.evidence)  # from the metric history
    assert "step 2" in d.root_cause and d.remedies
    with pytest.raises(TargetNotFound):
        triage("mlflow:0123456789abcdef0123456789abcdef")


def test_mlflow_triage_is_read_only_and_quiet(tmp_path):
    """Regression (issue 10): `evolve triage mlflow:<id>` printed alembic/MLflow INFO lines, and against a
    database path that did not exist it created one (then said the run did not exist)."""
    from mlflow.tracking import MlflowClient

    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    client = MlflowClient(f"sqlite:///{db}")
    run_id = client.create_run(client.create_experiment("quiet")).info.run_id
    client.set_tag(run_id, "status", "succeeded")
    client.set_terminated(run_id)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    before = db.stat().st_size, db.stat().st_mtime_ns
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    proc = subprocess.run([sys.executable, "-m", "evolve.cli", "triage", f"mlflow:{run_id}"], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("kind: healthy"), proc.stderr
    assert proc.stderr == ""
    assert (db.stat().st_size, db.stat().st_mtime_ns) == before and list(cwd.iterdir()) == []
    proc = subprocess.run([sys.executable, "-m", "evolve.cli", "triage", f"mlflow:{run_id}"], capture_output=True,
                          text=True, cwd=cwd, env={**env, "MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"}, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("error: mlflow:") and "no MLflow database" in proc.stderr
    assert list(cwd.iterdir()) == []


# ------------------------------------------------------------------------------------- slow

@pytest.mark.slow
@pytest.mark.parametrize("kind", FAILURE_KINDS)
def test_trainer_fault_run_dir_is_triaged_as_its_kind(tmp_path, kind):
    import torch

    if kind == "cuda_oom" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU; tests/test_train.py triages a CPU run that raises torch.OutOfMemoryError")
    # the same launch as tests/test_faults.py, so the run directory is the one the trainer really leaves
    run_dir = tmp_path / kind
    run_trainer("--config", str(TEMPLATES / "faults" / kind / "config.yaml"), "--run-dir", str(run_dir),
                "--set", "run.threads=1", timeout=180)
    d = triage(str(run_dir))
    assert d.kind == kind and d.confidence == 1.0
    assert d.remedies and d.remedies[0].text  # what it sets is the workload's (playbooks/workloads/)


@pytest.mark.slow
def test_a_1gb_log_is_triaged_in_bounded_memory(tmp_path):
    log = tmp_path / "huge.log"
    chatter = "".join(
        f"[2025-06-01 12:{i // 60 % 60:02d}:{i % 60:02d}] INFO trainer.py:412] step {i} | "
        + (f"{{'loss': 0.{i % 97:02d}, 'grad_norm': 0.4, 'reward': 0.{i % 89:02d}, 'kl': 0.00{i % 7}}}\n"
           if i % 10 == 0 else f"NCCL INFO Channel {i % 32:02d}/0 : 3[3] -> 4[4] via P2P/IPC/read rank {i % 8}\n")
        for i in range(10_000)).encode()
    with open(log, "wb") as f:
        while f.tell() < 2**30:
            f.write(chatter)
        f.write(b"Traceback (most recent call last):\n  File \"train.py\", line 9, in <module>\n"
                b"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n" + chatter[:20_000])
    # a fresh parent process, so RUSAGE_CHILDREN sees only the triage process and not this session's others
    probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "print(p.stdout); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", probe, *PYTHON, str(log), "--json"], capture_output=True,
                          text=True, cwd=ROOT, timeout=1200, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.time() - t0
    *out, rss_kb = proc.stdout.strip().splitlines()
    d = json.loads("\n".join(out))
    print(f"1 GB triage: {wall:.1f} s, peak RSS {int(rss_kb) / 1024:.0f} MB")
    assert d["kind"] == "cuda_oom" and d["evidence"][0]["text"].startswith("torch.OutOfMemoryError")
    assert int(rss_kb) < 200 * 1024


# ------------------------------------------------------------------------------------- healthy runs stay healthy

def _trainer_run(tmp_path: Path, rl: dict, evals: list[float], sft: dict | None = None, name: str = "run") -> Path:
    """A succeeded run dir shaped exactly as the trainer writes it: SFT records, RL records (one per step),
    eval records with the router's share, then the summary status.json."""
    run = tmp_path / name
    run.mkdir()
    records = [{"step": s, "phase": "sft", "train/loss": 1.0 / s, "train/grad_norm": (sft or {}).get("grad_norm", 2.0),
                "train/lr": 6e-3} for s in range(1, 21)]
    share = rl.pop("share", 0.3)
    records += [{"step": 20, "phase": "sft", "eval/accuracy": evals[0], "moe/max_load_share": share,
                 "moe/bias_abs_max": 0.01}]
    for k in range(1, 11):
        records.append({"step": 20 + k, "phase": "rl", "train/loss": 0.01, "train/grad_norm": 0.5,
                        "train/reward": rl.get("reward", 0.97), "train/raw_reward": rl.get("raw_reward", 0.97),
                        "train/entropy": rl.get("entropy", 0.5), "train/truncated": 0.0, "train/gen_len": 3.0,
                        "rl_step": k})
    records += [{"step": 30, "phase": "rl", "eval/accuracy": e, "moe/max_load_share": share,
                 "moe/bias_abs_max": 0.01} for e in evals[1:]]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {"eval_accuracy": evals[-1], "sft_eval_accuracy": evals[0], "steps": 30, "rl_steps": 10}
    (run / "status.json").write_text(json.dumps({"status": "succeeded", "failure": None, "summary": summary}))
    (run / "stdout.log").write_text("---\nstatus: succeeded\nfailure_kind: none\n"
                                    + "".join(f"{k}: {v}\n" for k, v in summary.items()))
    return run


@pytest.mark.parametrize("rl, evals, sft, sick", [
    # the quickstart's round 3 (issue 10): entropy 0.0005, a converged policy that scores 0.98
    ({"entropy": 0.0005, "reward": 0.97}, [0.98, 0.984], None, "entropy_collapse"),
    ({"share": 0.97, "reward": 0.97}, [0.98, 0.984], None, "router_collapse"),
    ({"reward": 0.97}, [0.98, 0.984], {"grad_norm": 2.0e4}, "grad_explosion"),  # one spike, clipped, still scores
    ({"reward": -0.1, "raw_reward": 0.9}, [0.9, 0.9], None, "reward_collapse"),  # a shaping penalty, not a collapse
])
def test_a_converged_run_that_scores_is_healthy_but_the_same_shape_that_fails_is_not(tmp_path, rl, evals, sft, sick):
    healthy = triage(str(_trainer_run(tmp_path, dict(rl), evals, sft, "scores")))
    assert (healthy.kind, healthy.remedies) == ("healthy", []), healthy.evidence
    # the same metric with the reward and eval low: the rule still fires (a warning on a succeeded run)
    low = {**rl, "reward": 0.0 if sick == "reward_collapse" else 0.1, "raw_reward": 0.0}
    assert triage(str(_trainer_run(tmp_path, low, [0.05, 0.1], sft, "wrong"))).kind == sick


def test_a_real_converged_trainer_run_with_near_zero_entropy_is_healthy(tmp_path):
    """Regression (issue 10): near-greedy RL sampling of a policy that already solves its prompts has
    entropy ~0 and reward ~1. The old rule `train/entropy last < 0.02` called that entropy_collapse."""
    run_dir = tmp_path / "converged"
    proc = run_trainer("--config", str(TEMPLATES / "rl-default" / "config.yaml"), "--run-dir", str(run_dir),
                       "--set", "task.params.addition.max_digits=1", "--set", "sft.steps=100", "--set",
                       "sft.eval_every=1000", "--set", "rl.steps=5", "--set", "rl.temperature=0.05", "--set",
                       "rl.prompts_per_step=8", "--set", "task.eval_size=20", "--set", "tracking.enabled=false",
                       "--set", "run.threads=1", timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:]
    rl = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"rl_step"' in line]
    assert len(rl) == 5 and rl[-1]["train/entropy"] < 0.02 and rl[-1]["train/reward"] >= 0.5  # the shape at issue
    d = triage(str(run_dir))
    assert d.kind == "healthy" and d.remedies == [], d.evidence


@pytest.mark.parametrize("guard, named", [
    ({"keys": ["train/reward"], "op": ">=", "value": 0.5, "agg": "last", "wieght": 1}, "unless.wieght"),
    ({"keys": "train/reward", "op": ">=", "value": 0.5}, "unless: each guard needs keys (a list)"),
    ({"keys": ["train/reward"], "value": 0.5}, "unless: each guard needs keys"),
    ({"keys": ["train/reward"], "op": ">=", "value": "0.5e0"}, "unless.value"),
    ({"keys": ["train/reward"], "op": ">=", "value": 0.5, "agg": "median"}, "unless.agg"),
    ("train/reward >= 0.5", "unless: expected a mapping"),
])
def test_a_bad_unless_guard_is_refused_naming_it(tmp_path, guard, named):
    book = yaml.safe_load((ROOT / "playbooks" / "triage.yaml").read_text())
    book["kinds"]["entropy_collapse"]["metric_rules"][0]["unless"] = [guard]
    path = tmp_path / "triage.yaml"
    path.write_text(yaml.safe_dump(book))
    with pytest.raises(ValueError, match=re.escape(named)):
        load_playbook(path)


def test_a_remedy_that_sets_keys_is_refused_in_triage_which_knows_no_workload(tmp_path):
    book = yaml.safe_load((ROOT / "playbooks" / "triage.yaml").read_text())
    book["kinds"]["host_oom"]["remedies"][0]["set"] = {"rl.prompts_per_step": 64}
    path = tmp_path / "triage.yaml"
    path.write_text(yaml.safe_dump(book))
    with pytest.raises(ValueError, match=re.escape("kinds.host_oom.remedies.set: unknown key")):
        load_playbook(path)


def test_relative_remedy_values_print_as_relative_not_as_a_string_to_paste(tmp_path):
    run = tmp_path / "oom"
    run.mkdir()
    (run / "status.json").write_text(json.dumps({"status": "failed", "summary": {}, "failure": {
        "kind": "host_oom", "step": 20, "message": "MemoryError: "}}))
    assert "--set run.max_memory_mb=<current × 2>" in _cli_text(triage(str(run)))


def _cli_text(d) -> str:
    """The text `evolve triage` prints: remedies with how the framework's workload does them."""
    workload = for_framework(d.framework)
    return format_text(d, how=lambda kind, r: workload.how_to(kind, r.id))


def _greedy_hubs(literals, size=4, least=3):
    """The grouping by its definition: recount every ungrouped literal's substrings before each pick."""
    from collections import Counter

    grams = {lit: {lit[k:k + size] for k in range(len(lit) - size + 1)} for lit in literals}
    left, groups = set(literals), {}
    while left:
        count = Counter(g for lit in left for g in grams[lit])
        best = max(count.items(), key=lambda kv: (kv[1], kv[0]), default=None)
        if best is None or best[1] < least:
            break
        groups[best[0]] = sorted(lit for lit in left if best[0] in grams[lit])
        left -= set(groups[best[0]])
    groups.update({lit: [lit] for lit in sorted(left)})
    return groups


def test_literal_hubs_match_the_greedy_definition():
    import random

    from evolve.triage.hubs import hubs as _hubs
    from evolve.triage.scan import _shape

    scan = load_playbook().scanner()
    shipped = tuple(sorted({_shape(lit) for lit in set(scan._filtered) | set(scan._key_literals)}))
    rng = random.Random(7)
    made = tuple(sorted({bytes(rng.choice(b"abcde") for _ in range(rng.randint(3, 9))) for _ in range(400)}))
    for literals in (shipped, made):
        hubs, expected = _hubs(literals), _greedy_hubs(literals)
        assert list(hubs.items()) == list(expected.items())


def test_every_shipped_signature_has_a_literal_to_prefilter_it():
    """A regex without a required literal is tried on every candidate chunk of every log: two such signatures
    once took the 10 MB benchmark over its 1 s goal. Give it a literal (a word every match must contain)."""
    book = load_playbook()
    assert [book.signatures[i].regex for i in book.scanner()._always] == []


def test_literals_are_found_among_tokens_exactly_as_among_whole_lines():
    """A literal without whitespace is looked for among a chunk's distinct tokens (a third of the bytes):
    the literals found must be those a search of the whole lines finds, spaced literals included."""
    scan = load_playbook().scanner()
    lines = [b"step 10 loss: nan grad_norm: inf", b"RuntimeError: CUDA out of memory. Tried to allocate 2 GiB",
             b"[rank3]:[E ProcessGroupNCCL.cpp:616] Watchdog caught collective operation timeout",
             b"\tOSError: [Errno 28] No space left on device", b"Killed", b"train_runtime': 812.3"]
    from evolve.triage.scan import _shape

    shapes = b"\n".join(_shape(line).lower() for line in lines)  # as a chunk's blob: digits zeroed, lower case
    wanted = set(scan._filtered)
    naive = {lit for lit in wanted | set(scan._key_literals) if _shape(lit) in shapes}
    assert scan._present(shapes, wanted) == naive and len(naive) > 10
    assert any(b" " in lit for lit in naive)  # a spaced literal was found too (`out of memory`, ...)

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

from evolve import logscan
from evolve.logscan import LogScan, required_literals
from evolve.triage import KINDS, TRAINER_KINDS, TargetNotFound, format_text, load_playbook, triage
from tests.conftest import ROOT, TEMPLATES, run_trainer
from trainer.config import load_config
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


@pytest.mark.parametrize("kind", TRAINER_KINDS)
def test_every_trainer_kind_has_remedies_whose_overrides_the_trainer_accepts(kind):
    remedies = load_playbook().kinds[kind]["remedies"]
    assert remedies
    overrides = [f"{k}={'' if v == '' else json.dumps(v)}" for r in remedies for k, v in (r.get("set") or {}).items()]
    load_config(None, overrides)  # raises ConfigError on an unknown key or a bad value


@pytest.mark.parametrize("edit, named", [
    (lambda b: b["kinds"].update(gpu_on_fire=b["kinds"]["crash"]), "gpu_on_fire"),
    (lambda b: b["kinds"]["nan_loss"]["signatures"][0].update(wieght=2), "wieght"),
    (lambda b: b["kinds"]["nan_loss"]["remedies"][0]["advice"].update(jax="x"), "jax"),
    (lambda b: b["kinds"].pop("disk_full"), "disk_full"),
    (lambda b: b["kinds"]["timeout"]["signatures"].append({"regex": "(unclosed", "weight": 1}), "(unclosed"),
    (lambda b: b["kinds"]["grad_explosion"]["metric_rules"][0].update(value="1.0e4"), "metric_rules.value"),
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


def test_a_log_without_any_signature_is_healthy_with_low_confidence(tmp_path):
    log = tmp_path / "quiet.log"
    log.write_text("".join(f"epoch {i} done\n" for i in range(50)))
    d = triage(str(log))
    assert d.kind == "healthy" and d.confidence < 0.5 and d.remedies == []


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


@pytest.mark.parametrize("regex, text", [
    (r"(loss|gradient norm) is (?P<v>nan|-?inf) at step", "LOSS IS NAN AT STEP"),
    (r"mat1 and mat2 shapes cannot be multiplied", "mat1 and mat2 shapes cannot be multiplied"),
    (r"Watchdog caught collective operation timeout", "[Rank 3] Watchdog caught collective operation timeout:"),
])
def test_required_literals_are_a_superset_test(regex, text):
    lits = required_literals(regex)
    assert lits and any(lit in text.lower().encode() for lit in lits)


def test_metric_series_keep_bounded_summaries_of_any_length():
    scan = LogScan([], ["kl"])
    for i in range(10_000):
        scan.add_metric("kl", float(i), i + 1, "x")
    s = scan.series["kl"]
    assert (s.n, s.max, s.max_line, len(s.head), len(s.tail)) == (10_000, 9999.0, 10_000, logscan.HEAD, logscan.HEAD)


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
    assert d.remedies[0].set == {"rl.adv_eps": 1.0e-4}
    assert "--set rl.adv_eps=0.0001" in format_text(d)


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
    assert all({"id", "text", "set", "advice"} <= r.keys() for r in d["remedies"])
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


# ------------------------------------------------------------------------------------- slow

@pytest.mark.slow
@pytest.mark.parametrize("kind", FAILURE_KINDS)
def test_trainer_fault_run_dir_is_triaged_as_its_kind(tmp_path, kind):
    # the same launch as tests/test_faults.py, so the run directory is the one the trainer really leaves
    run_dir = tmp_path / kind
    run_trainer("--config", str(TEMPLATES / "faults" / kind / "config.yaml"), "--run-dir", str(run_dir),
                "--set", "run.threads=1", timeout=180)
    d = triage(str(run_dir))
    assert d.kind == kind and d.confidence == 1.0
    assert d.remedies and (d.remedies[0].set or d.remedies[0].text)


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

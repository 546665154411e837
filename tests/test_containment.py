"""Launched code is hostile: each test runs a real `evolve campaign start` whose launch command is a small
malicious script (written here) next to the fake trainer, and checks that the agent's secrets, git calls,
process tree and limits hold. The namespace tests run where `unshare` is permitted (root here and in CI)."""

from __future__ import annotations

import io
import json
import os
import shutil
import textwrap
import time
from pathlib import Path

import pytest
import torch

from evolve.campaign import runner as campaign
from evolve.launch import cgroups, sandbox
from evolve.records.ledger import Ledger
from tests.test_campaign import FAKE, cli, write_spec

SECRET = "sk-evolve-test-" + os.urandom(8).hex()  # unique: found anywhere means leaked
SECRETS = {"OPENAI_API_KEY": SECRET, "DB_PASS": SECRET + "-db", "SLACK_WEBHOOK_URL": f"https://hooks.x/{SECRET}",
           "SENTRY_DSN": f"https://{SECRET}@o1.ingest.sentry.io/1", "HTTPS_PROXY": f"http://me:{SECRET}@proxy:3128",
           "GITLAB_PAT": SECRET + "-pat", "INNOCENT_LOOKING": SECRET + "-plain"}
needs_namespace = pytest.mark.skipif(bool(sandbox.namespace_refusal()), reason=sandbox.namespace_refusal() or "")


def evil_template(tmp_path: Path, script: str) -> Path:
    """The fake trainer's template plus `evil.py`, which the launch command runs first."""
    template = tmp_path / "template"
    shutil.copytree(FAKE, template)
    (template / "evil.py").write_text(textwrap.dedent(script))
    return template


def start(tmp_path: Path, script: str, rounds: int = 1, launch: dict | None = None, env: dict | None = None,
          **extra) -> tuple[int, str]:
    """`evolve campaign start` of a campaign whose launch runs evil.py then the fake trainer."""
    spec = write_spec(tmp_path, rounds=rounds, workspace={"template": str(evil_template(tmp_path, script))},
                      launch={"command": "python evil.py; python train.py", **(launch or {})}, **extra)
    result = cli("campaign", "--home", str(tmp_path / "home"), "start", str(spec), cwd=tmp_path,
                 env={**SECRETS, **(env or {})})
    return result.returncode, result.stdout + result.stderr


def leaked(root: Path) -> list[str]:
    """Every file under `root` that holds the secret (or a part of it)."""
    found = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink() and SECRET.encode() in path.read_bytes():
                found.append(str(path))
        except OSError:
            continue
    return found


# ---------------------------------------------------------------------------------------- git

def test_hooks_and_a_rewritten_git_config_never_run_in_the_agents_git_calls(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    payload = f"#!/bin/sh\nenv > {markers}/$(basename $0)-$$.env\n"
    code, out = start(tmp_path, f"""
        import os, stat
        from pathlib import Path
        payload = {payload!r}
        git = Path(".git")
        for hook in ("pre-commit", "post-commit", "commit-msg", "post-checkout", "post-rewrite",
                     "reference-transaction", "pre-auto-gc", "post-index-change"):
            (git / "hooks" / hook).write_text(payload)
            (git / "hooks" / hook).chmod(0o755)
        evil = Path({str(markers)!r}) / "evil.sh"
        evil.write_text(payload)
        evil.chmod(0o755)
        Path({str(tmp_path / "evil.cfg")!r}).write_text(f"[core]\\n\\tpager = {{evil}}\\n[filter \\"x\\"]\\n"
                                                        f"\\tclean = {{evil}}\\n\\tsmudge = {{evil}}\\n")
        with open(git / "config", "a") as f:
            f.write(f"[core]\\n\\tfsmonitor = {{evil}}\\n\\thooksPath = .git/hooks\\n[include]\\n"
                    f"\\tpath = {str(tmp_path / 'evil.cfg')}\\n[diff]\\n\\texternal = {{evil}}\\n")
        Path(".gitattributes").write_text("* filter=x\\n")
        """, rounds=3)
    assert code == 0, out
    assert sorted(p.name for p in markers.iterdir()) == ["evil.sh"], "a hook or a config program ran"
    assert leaked(tmp_path) == []
    records = Ledger(campaign.campaign_paths("demo", tmp_path / "home").ledger).records()
    assert [r.round for r in records] == [1, 2, 3]  # the agent committed round 2 and 3 over the poisoned .git
    config = (tmp_path / "ws" / "demo" / ".git" / "config").read_text()
    assert "fsmonitor" not in config and "include" not in config  # restored before each git call


# ---------------------------------------------------------------------------------------- the agent's environ

PROC_WALK = """
    import json, os, sys
    from pathlib import Path
    secret = {secret!r}[::-1]  # reversed in this file, so the script's own text is no leak
    chain, pid = [], os.getpid()
    while pid > 1:
        chain.append(pid)
        pid = int(Path(f"/proc/{{pid}}/stat").read_text().rsplit(")", 1)[1].split()[1])
    hits, seen = [], 0
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            data = environ.read_bytes()
        except OSError:
            continue
        seen += 1
        if secret.encode() in data:
            hits.append(environ.parent.name)
    Path({report!r}).write_text(json.dumps({{"chain": chain, "seen": seen, "hits": hits}}))
"""


@pytest.mark.parametrize("isolation", [pytest.param("auto", marks=needs_namespace), "off"])
def test_a_run_finds_no_secret_in_any_environ_it_can_read(tmp_path, isolation):
    report = tmp_path / "proc.json"
    code, out = start(tmp_path, PROC_WALK.format(secret=SECRET[::-1], report=str(report)),
                      launch={"isolation": isolation})
    assert code == 0, out
    seen = json.loads(report.read_text())
    assert seen["hits"] == [] and seen["seen"] > 0
    if isolation == "auto":  # its own PID namespace: only the run's processes are there to read
        assert seen["seen"] <= 8 and len(seen["chain"]) <= 4
    else:  # the agent itself is on the chain, and its environ was read
        assert len(seen["chain"]) >= 2
    assert leaked(tmp_path) == []


def test_the_campaign_process_reexecs_without_its_secrets_and_still_has_them(tmp_path):
    # the agent's own view: its initial environ has none, its vault (or os.environ, for the non-secret ones) has all
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent(f"""
        import json, os, sys
        sys.argv = ["evolve", "campaign", "start", "x"]
        from evolve.launch import secrets
        secrets.reexec_without_secrets(sys.orig_argv)
        names = {sorted(SECRETS)!r}
        environ = open("/proc/self/environ", "rb").read().decode(errors="replace")
        print(json.dumps({{"environ": {SECRET!r} in environ, "got": {{n: secrets.get(n) for n in names}},
                          "in_os": sorted(n for n in names if n in os.environ), "vault": secrets.held()}}))
        """))
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **SECRETS, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    seen = json.loads(out.stdout)
    assert seen["environ"] is False
    assert seen["got"] == SECRETS  # nothing lost: the LLM brain and MLflow still get what they need
    assert "OPENAI_API_KEY" in seen["vault"] and "OPENAI_API_KEY" not in seen["in_os"]


# ---------------------------------------------------------------------------------------- the run's environment

ENV_DUMP = """
    import json, os
    from pathlib import Path
    home = Path(os.path.expanduser("~"))
    def readable(p):
        try:
            return Path(p).read_text()
        except OSError:
            return None
    Path({report!r}).write_text(json.dumps({{
        "env": dict(os.environ), "home": str(home),
        "via_home": {{p: readable(home / p) for p in (".aws/credentials", ".netrc", ".kaggle/kaggle.json",
                                                      ".config/gcloud/credentials.db")}},
        "absolute": {{p: readable(Path({real_home!r}) / p) for p in (".aws/credentials", ".netrc")}}}}))
"""


@pytest.mark.parametrize("isolation", [pytest.param("auto", marks=needs_namespace), "off"])
def test_only_the_allow_list_reaches_a_run_and_home_is_a_scratch_folder(tmp_path, isolation):
    real_home, report = tmp_path / "realhome", tmp_path / "env.json"
    for rel in (".aws/credentials", ".netrc", ".kaggle/kaggle.json", ".config/gcloud/credentials.db"):
        (real_home / rel).parent.mkdir(parents=True, exist_ok=True)
        (real_home / rel).write_text(SECRET)
    code, out = start(tmp_path, ENV_DUMP.format(report=str(report), real_home=str(real_home)),
                      launch={"isolation": isolation, "env": {"CHOSEN_BY_SPEC": "yes"}},
                      env={"HOME": str(real_home), "LANG": "C.UTF-8", "NCCL_DEBUG": "WARN"})
    assert code == 0, out
    seen = json.loads(report.read_text())
    assert not set(SECRETS) & set(seen["env"]), "a credential variable reached the run"
    assert SECRET not in json.dumps(seen["env"])
    assert seen["env"]["CHOSEN_BY_SPEC"] == "yes" and seen["env"]["LANG"] == "C.UTF-8"
    assert seen["env"]["NCCL_DEBUG"] == "WARN" and "EVOLVE_RUN_DIR" in seen["env"]
    assert seen["home"].startswith(str(tmp_path / "home" / "campaigns" / "demo" / "runs")) and seen["home"] != str(
        real_home)
    assert set(seen["via_home"].values()) == {None}
    if isolation == "auto":  # inside the mount namespace the real home's credential files are covered too
        assert set(seen["absolute"].values()) <= {None, ""}
    else:  # documented: without a mount namespace, an absolute path is readable by the same uid
        assert seen["absolute"][".netrc"] == SECRET
    assert "containment: " in out


# ---------------------------------------------------------------------------------------- setsid escape

ESCAPE = """
    import os, sys, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(40)  # holds the output pipe
        os._exit(0)
    time.sleep({parent_s})
"""


@pytest.mark.parametrize("isolation", [pytest.param("auto", marks=needs_namespace), "off"])
def test_a_setsid_child_cannot_stretch_a_round_past_its_timeout(tmp_path, isolation):
    t0 = time.monotonic()
    code, out = start(tmp_path, ESCAPE.format(parent_s=40), launch={"isolation": isolation, "timeout_s": 3})
    elapsed = time.monotonic() - t0
    assert code == 0, out
    launched = json.loads((campaign.campaign_paths("demo", tmp_path / "home").run_dir(1) / "launch.json").read_text())
    assert launched["timed_out"] is True and launched["wall_s"] < 3 + 5 + 2
    assert elapsed < 30
    assert _sleepers(tmp_path) == []


def test_a_setsid_child_ends_with_its_command_on_the_process_tree_fallback(tmp_path, monkeypatch):
    # no namespace and no cgroup: only the subreaper and the /proc sweep find the escaped child
    monkeypatch.setattr(cgroups, "hierarchies", lambda: {})
    spec = write_spec(tmp_path, rounds=1, workspace={"template": str(evil_template(tmp_path, ESCAPE.format(
        parent_s=0)))}, launch={"command": "python evil.py; python train.py", "isolation": "off", "timeout_s": 30})
    out = io.StringIO()
    t0 = time.monotonic()
    campaign.start(spec, home=tmp_path / "home", stream=out)
    assert time.monotonic() - t0 < 20  # not the 40 s the escaped child sleeps
    launched = json.loads((campaign.campaign_paths("demo", tmp_path / "home").run_dir(1) / "launch.json").read_text())
    assert launched["timed_out"] is False and launched["wall_s"] < 5
    assert _sleepers(tmp_path) == []
    assert "PID namespace no (launch.isolation: off) · cgroup: none writable" in out.getvalue()


def _sleepers(tmp_path: Path) -> list[int]:
    """Processes still running evil.py of this test's workspace."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"evil.py" in cmdline.read_bytes() and str(tmp_path).encode() in \
                    os.readlink(cmdline.parent / "cwd").encode():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


# ---------------------------------------------------------------------------------------- default limits

LIMITS_DUMP = """
    import json, resource
    from pathlib import Path
    cgroup = {{}}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        for name, file in (("pids", "pids.max"), ("memory", "memory.limit_in_bytes")):
            if name in names.split(","):
                for base in Path("/sys/fs/cgroup").glob(f"*{{name}}*"):
                    if (base / path.lstrip("/") / file).is_file():
                        cgroup[name] = (base / path.lstrip("/") / file).read_text().strip()
    Path({report!r}).write_text(json.dumps({{"fsize": resource.getrlimit(resource.RLIMIT_FSIZE)[0],
                                            "as": resource.getrlimit(resource.RLIMIT_AS)[0], "cgroup": cgroup}}))
"""


def test_default_limits_hold_in_a_run_and_explicit_zero_lifts_them(tmp_path):
    report = tmp_path / "limits.json"
    code, out = start(tmp_path, LIMITS_DUMP.format(report=str(report)))
    assert code == 0, out
    seen = json.loads(report.read_text())
    line = next(x for x in out.splitlines() if x.startswith("containment: "))
    assert 0 < seen["fsize"] < shutil.disk_usage(tmp_path).free  # half the free disk, as RLIMIT_FSIZE
    usable = cgroups.hierarchies()
    if "pids" in usable:
        assert seen["cgroup"]["pids"] == "8192" and "processes 8192 (pids.max)" in line
    if "memory" in usable:
        assert 0 < int(seen["cgroup"]["memory"]) <= sandbox.machine_memory_bytes() * 0.8 + 4096
        assert "resident (memory cgroup)" in line
    elif not sandbox.gpu_visible():
        assert 0 < seen["as"] != -1 and "address space (RLIMIT_AS)" in line

    shutil.rmtree(tmp_path / "home")
    shutil.rmtree(tmp_path / "ws")
    shutil.rmtree(tmp_path / "template")
    shutil.rmtree(tmp_path / "memory")
    code, out = start(tmp_path, LIMITS_DUMP.format(report=str(report)),
                      launch={"max_file_mb": 0, "max_memory_mb": 0, "max_processes": 0})
    assert code == 0, out
    seen = json.loads(report.read_text())
    assert seen["fsize"] == seen["as"] == -1  # RLIM_INFINITY
    assert seen["cgroup"].get("pids", "max") == "max"
    assert "processes unlimited" in out and "file size unlimited" in out and "memory unlimited" in out


def test_a_docker_launcher_is_refused_before_anything_is_made(tmp_path):
    spec = write_spec(tmp_path, launch={"launcher": "docker"})
    result = cli("campaign", "--home", str(tmp_path / "home"), "start", str(spec), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "launch.launcher" in result.stderr and "not implemented" in result.stderr
    assert not (tmp_path / "home").exists() and not (tmp_path / "ws").exists()


# ---------------------------------------------------------------------------------------- checkpoints

class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def crafted_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker, path = tmp_path / "pwned", tmp_path / "crafted.pt"
    torch.save({"model": {}, "config": _Evil(marker), "step": 0}, path)
    assert not marker.exists()
    return path, marker


@pytest.mark.parametrize("command", [["export", "{pt}", "{out}"], ["serve", "{pt}", "--port", "0"]])
def test_a_crafted_checkpoint_is_one_line_and_runs_nothing(tmp_path, command):
    pt, marker = crafted_checkpoint(tmp_path)
    args = [a.format(pt=pt, out=tmp_path / "hf") for a in command]
    result = cli(*args, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert str(pt) in lines[0] and "not a checkpoint written by this trainer" in lines[0]
    assert not marker.exists()
    assert not (tmp_path / "hf").exists()


def test_the_moe_brain_refuses_a_crafted_checkpoint_and_the_campaign_goes_on(tmp_path):
    pt, marker = crafted_checkpoint(tmp_path)
    spec = write_spec(tmp_path, rounds=3, brain={"kind": "moe", "options": {"checkpoint": str(pt)}})
    campaign.start(spec, home=tmp_path / "home", stream=io.StringIO())
    records = Ledger(campaign.campaign_paths("demo", tmp_path / "home").ledger).records()
    assert [r.round for r in records] == [1, 2, 3]
    fallbacks = [r.proposal["fallback"] for r in records[1:] if r.proposal["fallback"]]
    assert fallbacks and all("not a checkpoint written by this trainer" in f for f in fallbacks)
    assert not marker.exists()

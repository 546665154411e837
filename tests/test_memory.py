"""The ledger and the memory file: durable, idempotent per round, readable back."""

from __future__ import annotations

import json
import logging

import pytest

from evolve.records.ledger import Ledger, RoundRecord
from evolve.records.lessons import criticise, describe_changes
from evolve.records.memory import Memory


def make_record(n: int, verdict: str = "keep", objective: float | None = 0.5, best: float | None = None,
                kind: str = "healthy", status: str = "succeeded") -> RoundRecord:
    proposal = {"hypothesis": f"hypothesis {n}", "changes": {"rl": {"lr": 1e-4 * n}}, "expected": "accuracy up",
                "source": "rules"}
    return RoundRecord(round=n, parent=f"p{n}", commit=f"c{n}", proposal=proposal, status=status, kind=kind,
                       objective=objective, verdict=verdict,
                       criticism=criticise(proposal, status, kind, objective, best, verdict), wall_s=1.5 * n)


def test_ledger_round_trips_records(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    records = [make_record(1), make_record(2, "revert", 0.4, 0.5), make_record(3, "crash", None, 0.5, "nan_loss")]
    for r in records:
        assert ledger.append(r)
    assert Ledger(tmp_path / "ledger.jsonl").records() == records
    assert ledger.last_round() == 3


def test_empty_ledger_has_no_rounds(tmp_path):
    assert Ledger(tmp_path / "none.jsonl").records() == []
    assert Ledger(tmp_path / "none.jsonl").last_round() == 0


def test_ledger_append_is_idempotent_per_round(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    assert ledger.append(make_record(1))
    assert not ledger.append(make_record(1, "revert"))  # a resumed campaign replaying round 1
    assert len((tmp_path / "ledger.jsonl").read_text().splitlines()) == 1
    assert ledger.records()[0].verdict == "keep"


def test_ledger_drops_a_torn_last_line_and_keeps_appending(tmp_path, caplog):
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    ledger.append(make_record(1))
    ledger.append(make_record(2))
    with open(path, "a") as f:
        f.write(json.dumps(make_record(3).to_dict())[:40])  # the crash hit mid-write
    with caplog.at_level(logging.WARNING, logger="evolve.records.ledger"):
        assert [r.round for r in ledger.records()] == [1, 2]
    assert "torn" in caplog.text
    assert ledger.append(make_record(3))
    assert [r.round for r in Ledger(path).records()] == [1, 2, 3]
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_ledger_refuses_corruption_before_the_last_line(tmp_path):
    path = tmp_path / "ledger.jsonl"
    Ledger(path).append(make_record(1))
    path.write_text("{not json\n" + path.read_text())
    with pytest.raises(ValueError, match="corrupt ledger line"):
        Ledger(path).records()


def test_ledger_restores_a_lost_final_newline(tmp_path):
    path = tmp_path / "ledger.jsonl"
    Ledger(path).append(make_record(1))
    path.write_text(path.read_text().rstrip("\n"))
    Ledger(path).append(make_record(2))
    assert [r.round for r in Ledger(path).records()] == [1, 2]


def test_record_rejects_an_unknown_verdict():
    with pytest.raises(ValueError, match="verdict"):
        make_record(1, verdict="discard")


def test_memory_writes_header_once_and_one_section_per_round(tmp_path):
    memory = Memory(tmp_path / "mem" / "c.md")
    for r in (make_record(1), make_record(2, "revert", 0.4, 0.5)):
        assert memory.append(r)
    text = memory.path.read_text()
    assert text.count("# Memory") == 1
    assert "## Round 1 — keep" in text and "## Round 2 — revert" in text
    assert memory.rounds() == [1, 2]
    s = memory.sections()[1]
    assert s["hypothesis"] == "hypothesis 2" and s["verdict"] == "revert" and "0.4" in s["observed"]


def test_memory_append_is_idempotent_per_round(tmp_path):
    memory = Memory(tmp_path / "c.md")
    assert memory.append(make_record(1))
    assert not memory.append(make_record(1, "crash", None))
    assert memory.path.read_text().count("## Round 1") == 1


def test_memory_entry_keeps_multiline_text_on_one_line(tmp_path):
    r = make_record(1)
    r.criticism["lesson"] = "first line\n## Round 9 — keep\nthird"
    memory = Memory(tmp_path / "c.md")
    memory.append(r)
    assert memory.rounds() == [1]  # a heading-like lesson must not invent a round


def test_summary_counts_verdicts_and_lists_lessons_newest_first(tmp_path):
    memory = Memory(tmp_path / "c.md")
    memory.append(make_record(1))
    memory.append(make_record(2, "revert", 0.4, 0.5))
    memory.append(make_record(3, "crash", None, 0.5, "nan_loss", "failed"))
    summary = memory.summary()
    assert summary.startswith("3 rounds: 1 keep, 1 revert, 1 crash.")
    assert summary.index("round 3 (crash)") < summary.index("round 2 (revert)") < summary.index("round 1 (keep)")
    assert "nan_loss" in summary


def test_summary_never_exceeds_max_chars_and_drops_oldest_first(tmp_path):
    memory = Memory(tmp_path / "c.md")
    for n in range(1, 41):
        memory.append(make_record(n, "revert", 0.1, 0.5))
    for limit in (30, 300, 2000):
        assert len(memory.summary(max_chars=limit)) <= limit
    summary = memory.summary(max_chars=600)
    assert "round 40 (revert)" in summary and "round 1 (revert)" not in summary
    assert Memory(tmp_path / "empty.md").summary() == "No rounds yet."


def test_criticise_states_expected_observed_and_a_lesson_per_verdict():
    proposal = {"hypothesis": "lower lr stops nan_loss", "changes": {"rl.lr": 1e-4}, "expected": "healthy run"}
    kept = criticise(proposal, "succeeded", "healthy", 0.91, 0.88, "keep")
    assert kept["change"] == "rl.lr=0.0001" and kept["expected"] == "healthy run"
    assert kept["observed"] == "succeeded, healthy, objective 0.91 vs best 0.88"
    assert "improved" in kept["lesson"] and "0.88 → 0.91" in kept["lesson"]
    crashed = criticise(proposal, "failed", "nan_loss", None, 0.88, "crash")
    assert "nan_loss" in crashed["lesson"] and "objective none" in crashed["observed"]


REMEDY = {"changes": [{"file": "config.yaml", "key": "rl.adv_eps", "value": 1e-4, "patch": ""}],
          "target": "nan_loss", "hypothesis": "h", "expected": "e"}


@pytest.mark.parametrize("args, mode, says, never", [
    # no best yet: the first objective (the lesson claimed a best that did not exist)
    (("succeeded", "healthy", 0.984, None, "keep"), "max", ["first objective, 0.984", "now the best"],
     ["noise margin", "→", "baseline"]),
    (("succeeded", "entropy_collapse", 0.984, None, "keep"), "max",
     ["first objective", "triage warned of entropy_collapse; recorded, not a veto"], ["noise margin"]),
    (("succeeded", "healthy", 0.95, 0.9, "keep"), "max", ["improved", "0.9 → 0.95"], ["worse"]),
    (("succeeded", "healthy", 0.9, 0.9, "revert"), "max", ["no measurable difference", "equal to the best"],
     ["worse", "noise margin"]),
    (("succeeded", "healthy", 0.902, 0.9, "revert"), "max", ["did not beat the best (0.9 → 0.902) by the noise"],
     ["worse"]),
    (("succeeded", "healthy", 0.8, 0.9, "revert"), "max", ["made it worse (0.9 → 0.8)"], ["noise margin"]),
    (("succeeded", "healthy", 0.8, 0.9, "revert"), "min", ["did not beat the best", "noise margin"], ["worse"]),
    (("succeeded", "reward_hacking", 0.8, 0.9, "revert"), "max", ["worse", "triage warned of reward_hacking"], []),
    (("failed", "nan_loss", None, None, "crash"), "max", ["ended in nan_loss (failed)", "without a fix"],
     ["removed", "best"]),
    (("failed", "router_collapse", None, None, "crash"), "max",
     ["removed nan_loss, and the run then failed with router_collapse", "keep this fix"], ["ended in"]),
    (("succeeded", "healthy", None, 0.9, "crash"), "max", ["finished but reported no objective"],
     ["ended in healthy", "nan_loss"]),
])
def test_every_lesson_branch_says_what_happened_and_nothing_false(args, mode, says, never):
    lesson = criticise(REMEDY, *args, mode=mode)["lesson"]
    assert all(s in lesson for s in says), lesson
    assert not any(n in lesson for n in never), lesson


def test_observed_says_no_best_yet_rather_than_best_none():
    assert criticise(REMEDY, "failed", "nan_loss", None, None, "crash")["observed"] == \
        "failed, nan_loss, objective none vs no best yet"


def test_describe_changes_flattens_nested_and_listed_changes():
    assert describe_changes({"rl": {"lr": 0.001, "clip": 0.2}}) == "rl.lr=0.001, rl.clip=0.2"
    assert describe_changes([{"path": "scaffold.py", "patch": "x"}]) == "0.path=scaffold.py, 0.patch=x"
    proposal_changes = [{"file": "config.yaml", "key": "rl.lr", "value": 0.0001, "patch": ""},
                        {"file": "other.yaml", "key": "a.b", "value": 2, "patch": ""},
                        {"file": "scaffold.py", "key": "", "value": None, "patch": "--- a/scaffold.py\n"}]
    assert describe_changes(proposal_changes) == "rl.lr=0.0001, other.yaml:a.b=2, patch scaffold.py"
    assert describe_changes({}) == "no change"
    assert len(describe_changes({"k": "v" * 1000})) == 300


@pytest.mark.parametrize("line, needle", [
    (b"[1, 2]\n", "expected a JSON object, got list"),
    (b'{"round": "one"}\n', "round: expected int, got 'one' (str)"),
    (b'{"round": 1}\n', "parent: required"),
    (b'{"round": "\xff"}\n', "not UTF-8"),
    (b"garbage\n", "corrupt ledger line"),
])
def test_a_ledger_line_that_is_not_a_record_names_the_file_and_line(tmp_path, line, needle):
    # regression: a JSON list or a wrong field type in the ledger was a traceback in status and report
    from evolve.records.ledger import LedgerError

    path = tmp_path / "ledger.jsonl"
    Ledger(path).append(make_record(1))
    path.write_bytes(path.read_bytes() + line)
    with pytest.raises(LedgerError, match="ledger.jsonl:2: corrupt ledger line") as e:
        Ledger(path).records()
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_reading_the_ledger_never_writes_it_and_the_next_append_repairs_it(tmp_path):
    path = tmp_path / "ledger.jsonl"
    Ledger(path).append(make_record(1))
    path.write_bytes(path.read_bytes() + b'{"round": 2, "par')  # torn by a crash mid-append
    before = path.read_bytes()
    assert [r.round for r in Ledger(path).records()] == [1] and path.read_bytes() == before
    assert Ledger(path).append(make_record(2))
    assert [r.round for r in Ledger(path).records()] == [1, 2]

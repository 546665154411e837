"""Workloads: each adapter's playbook loads strictly and speaks its own keys, the registry refuses what it
does not know, and the rules brain's fixes for the in-repo trainer are configs the trainer accepts."""

from __future__ import annotations

import json

import pytest
import yaml

from evolve.brains.rules import Views
from evolve.campaign.spec import SpecError
from evolve.triage import TRAINER_KINDS, load_playbook
from evolve.workloads import LAUNCH_FILE, WORKLOADS, for_framework, make_workload
from evolve.workloads.base import PLAYBOOKS, load_workload_playbook
from evolve.workloads.evolve_trainer import EvolveTrainer
from tests.conftest import ROOT
from trainer.config import load_config

TRAINER = EvolveTrainer({"timeout_s": 900.0, "retry": 0})


@pytest.mark.parametrize("kind", TRAINER_KINDS)
def test_every_trainer_kind_has_fixes_whose_overrides_the_trainer_accepts(kind):
    triage_ids = [r["id"] for r in load_playbook().kinds[kind]["remedies"]]
    fixes = TRAINER.playbook.fixes_for(kind, triage_ids)
    assert triage_ids, f"{kind}: triage offers no remedy"
    view = Views(TRAINER, {"config.yaml": {}, LAUNCH_FILE: {}})
    for fix in fixes:
        file = TRAINER.file_of(fix.file)
        if file == LAUNCH_FILE:
            continue
        for key in fix.requires:
            assert view.get(file, key) is not None, f"{fix.id}.requires: {key} is not a trainer config key"
        changes = view.resolve(file, fix.set)  # "*2" against the defaults
        assert changes is not None, f"{fix.id}: a relative value on a key that is not a number"
        load_config(None, [f"{c.key}={'' if c.value == '' else json.dumps(c.value)}" for c in changes])


def test_every_workload_fix_names_a_triage_remedy_or_brings_its_own_text():
    remedies = {k: {r["id"] for r in spec.get("remedies") or []} for k, spec in load_playbook().kinds.items()}
    for path in sorted(PLAYBOOKS.glob("*.yaml")):
        book = load_workload_playbook(path, kinds=set(remedies))
        for kind, fixes in book.fixes.items():
            for fid, fix in fixes.items():
                assert fid in remedies[kind] or fix.text, f"{path.name}: remedies.{kind}.{fid}: no such triage " \
                                                          "remedy, and no text of its own"


def test_a_workload_playbook_is_read_strictly(tmp_path):
    bad = tmp_path / "w.yaml"
    bad.write_text("remedies:\n  nan_loss:\n    lower_lr: {set: {lr: 1}, colour: red}\n")
    with pytest.raises(ValueError, match=r"remedies\.nan_loss\.lower_lr\.colour: unknown key"):
        load_workload_playbook(bad, kinds={"nan_loss"})
    bad.write_text("remedies:\n  gpu_on_fire: {}\n")
    with pytest.raises(ValueError, match="gpu_on_fire"):
        load_workload_playbook(bad, kinds={"nan_loss"})
    bad.write_text("moves:\n- {id: m, hypothesis: h, expected: e, set: {a: 1}, when: {a: 'about 3'}}\n")
    with pytest.raises(ValueError, match=r"moves\[0\]\.when\.a"):
        load_workload_playbook(bad, kinds=set())


def test_the_registry_lists_the_workloads_and_refuses_an_unknown_one(tmp_path):
    assert WORKLOADS.names() == ["evolve-trainer", "trl", "command", "competition"]
    spec = yaml.safe_load((ROOT / "playbooks" / "campaigns" / "quickstart.yaml").read_text())
    spec["workload"] = "trll"
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    from evolve.campaign.spec import load_spec

    with pytest.raises(SpecError, match="workload.kind: 'trll' is not a workload; known: evolve-trainer, trl, command, "
                                        "competition"):
        load_spec(path)
    spec["workload"] = {"kind": "evolve-trainer", "options": {"colour": "red"}}
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError, match="workload.options.colour: the workload 'evolve-trainer' takes no options"):
        make_workload(load_spec(path))


def test_triage_says_how_a_remedy_is_done_in_the_workload_of_its_framework():
    assert for_framework("evolve").how_to("nan_loss", "advantage_epsilon") == "evolve trainer: --set rl.adv_eps=0.0001"
    assert for_framework("verl") is None  # no workload: triage gives the framework's advice only


def test_a_command_workload_has_only_the_launch_fixes_unless_the_user_gives_a_playbook(tmp_path):
    from evolve.workloads.command import Command, CommandOptions

    bare = Command(CommandOptions(), {"timeout_s": 60.0, "retry": 0})
    assert bare.playbook.moves == [] and set(bare.playbook.fixes) == {"timeout", "host_oom", "dist_timeout"}
    own = tmp_path / "mine.yaml"
    own.write_text("moves:\n- {id: wider, hypothesis: h, expected: e, set: {width: '*2'}}\n")
    given = Command(CommandOptions(config="params.yaml", playbook=str(own)), {})
    assert [m.id for m in given.playbook.moves] == ["wider"] and "timeout" in given.playbook.fixes
    assert given.config_file == "params.yaml"

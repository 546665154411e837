"""The layout shows the architecture: the agent's loop knows no trainer. Only the evolve-trainer workload and
the MoE brain (the client of the in-repo model's server, which lives in trainer/serve/) import `trainer`;
this reads every module's imports to hold that, and holds the subpackage layout and the size of a module."""

from __future__ import annotations

import ast
import re

from tests.conftest import ROOT

MAY_IMPORT_TRAINER = {"evolve/workloads/evolve_trainer.py", "evolve/brains/moe.py"}


def _imports(path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_agent_module_imports_the_trainer_outside_its_workload_and_the_serving_code():
    offenders = {}
    for path in sorted((ROOT / "evolve").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        found = sorted(n for n in _imports(path) if n == "trainer" or n.startswith("trainer."))
        if found and rel not in MAY_IMPORT_TRAINER:
            offenders[rel] = found
    assert not offenders, f"these modules import the trainer: {offenders}"


def test_the_brains_and_the_loop_import_no_workload_but_through_the_registry():
    """A brain or a node that imported a specific workload would know a trainer again."""
    for rel in ("evolve/brains/__init__.py", "evolve/brains/rules.py", "evolve/brains/llm.py",
                "evolve/campaign/nodes.py", "evolve/campaign/runner.py"):
        specific = [n for n in _imports(ROOT / rel)
                    if n.startswith("evolve.workloads.") and n != "evolve.workloads.base"]
        assert not specific, f"{rel} imports {specific}"


# the shared primitives every subpackage uses; anything else belongs in the folder of its concern
TOP_LEVEL = {"__init__.py", "__main__.py", "cli.py", "files.py", "registry.py", "strict.py"}
SUBPACKAGES = {"brains", "campaign", "competition", "launch", "records", "triage", "workloads", "workspace"}
MAX_LINES = 450


def test_the_agent_is_a_set_of_subpackages_around_a_few_shared_primitives():
    evolve = ROOT / "evolve"
    assert {p.name for p in evolve.glob("*.py")} == TOP_LEVEL
    packages = {p.parent.name for p in evolve.glob("*/__init__.py")}
    assert packages == SUBPACKAGES, "a new subpackage belongs in docs/ARCHITECTURE.md and here"
    architecture = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    missing = [name for name in sorted(SUBPACKAGES) if not re.search(rf"^  {name}/ +\S", architecture, re.M)]
    assert not missing, f"docs/ARCHITECTURE.md does not describe {missing}"


def test_no_product_module_is_over_450_lines():
    long = {p.relative_to(ROOT).as_posix(): n for top in ("evolve", "trainer") for p in (ROOT / top).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by concept: {long}"

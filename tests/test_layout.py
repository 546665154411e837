"""The layout shows the architecture: the agent's loop knows no trainer. Only the evolve-trainer workload,
the serving code (the in-repo model's server and its MoE brain client) and the trainer itself import
`trainer`; this reads every module's imports to hold that."""

from __future__ import annotations

import ast

from tests.conftest import ROOT

MAY_IMPORT_TRAINER = {"evolve/workloads/evolve_trainer.py", "evolve/serve.py", "evolve/brains/moe.py"}


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
    for rel in ("evolve/brains/__init__.py", "evolve/brains/rules.py", "evolve/brains/llm.py", "evolve/nodes.py",
                "evolve/campaign.py"):
        specific = [n for n in _imports(ROOT / rel)
                    if n.startswith("evolve.workloads.") and n != "evolve.workloads.base"]
        assert not specific, f"{rel} imports {specific}"

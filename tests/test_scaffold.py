import time

import pytest

from trainer.scaffold import Scaffold, ScaffoldError
from trainer.tasks import make_task
from trainer.tokenizer import Message

PROBLEM = make_task("addition").generate(__import__("random").Random(0))


def scaffold(tmp_path, body: str, timeout: float = 5.0) -> Scaffold:
    path = tmp_path / "scaffold.py"
    path.write_text(body)
    return Scaffold(str(path), timeout)


def test_missing_hooks_fall_back_to_defaults(tmp_path):
    s = scaffold(tmp_path, "X = 1\n")
    assert s.build_prompt(PROBLEM) == list(PROBLEM.messages)
    assert s.shape_reward(PROBLEM, ["1"], 1.0) == 1.0
    assert s.task_mix(0, {"addition": 1.0}) == {"addition": 1.0}


def test_hooks_are_called(tmp_path):
    s = scaffold(tmp_path, "from trainer.tokenizer import Message\n"
                           "def build_prompt(p):\n    return [Message('system', 'be exact'), *p.messages]\n"
                           "def shape_reward(p, turns, r):\n    return r - 0.1 * len(turns[-1])\n"
                           "def task_mix(step, w):\n    return {k: v * (step + 1) for k, v in w.items()}\n")
    assert s.build_prompt(PROBLEM)[0] == Message("system", "be exact")
    assert s.shape_reward(PROBLEM, ["12"], 1.0) == pytest.approx(0.8)
    assert s.task_mix(2, {"addition": 1.0}) == {"addition": 3.0}


def test_import_failure_is_a_scaffold_error(tmp_path):
    with pytest.raises(ScaffoldError, match="failed to import: SyntaxError"):
        scaffold(tmp_path, "def broken(:\n")
    with pytest.raises(ScaffoldError, match="failed to import: SystemExit"):
        scaffold(tmp_path, "raise SystemExit(3)\n")


def test_raising_hook_is_a_scaffold_error_naming_the_hook(tmp_path):
    s = scaffold(tmp_path, "def shape_reward(p, turns, r):\n    return 1 / 0\n")
    with pytest.raises(ScaffoldError, match=r"shape_reward\(\) raised ZeroDivisionError"):
        s.shape_reward(PROBLEM, ["1"], 1.0)


def test_hanging_hook_fails_within_its_timeout_instead_of_hanging(tmp_path):
    s = scaffold(tmp_path, "def task_mix(step, w):\n    while True:\n        pass\n", timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(ScaffoldError, match="ran longer than run.hook_timeout_s=0.5"):
        s.task_mix(0, {"addition": 1.0})
    assert time.monotonic() - t0 < 3


def test_hanging_import_fails_within_its_timeout(tmp_path):
    with pytest.raises(ScaffoldError, match="import ran longer"):
        scaffold(tmp_path, "while True:\n    pass\n", timeout=0.5)


@pytest.mark.parametrize("body, hook, args", [
    ("def build_prompt(p):\n    return 'text'\n", "build_prompt", (PROBLEM,)),
    ("def shape_reward(p, t, r):\n    return None\n", "shape_reward", (PROBLEM, ["1"], 1.0)),
    ("def task_mix(s, w):\n    return {'nosuch': 1.0}\n", "task_mix", (0, {"addition": 1.0})),
    ("def task_mix(s, w):\n    return {'addition': 0.0}\n", "task_mix", (0, {"addition": 1.0})),
])
def test_wrong_return_types_are_scaffold_errors(tmp_path, body, hook, args):
    s = scaffold(tmp_path, body)
    with pytest.raises(ScaffoldError, match=f"{hook}\\(\\) must return"):
        getattr(s, hook)(*args)


def test_outer_deadline_survives_an_inner_one():
    from trainer.deadline import deadline

    class Outer(Exception):
        pass

    class Inner(Exception):
        pass

    with pytest.raises(Outer):
        with deadline(0.6, Outer()):
            with deadline(5.0, Inner()):
                pass  # the inner block ends early: the outer timer must be re-armed
            while True:
                pass

import random
from collections import Counter

import pytest

from trainer.tasks import TASKS, Problem, TaskMix, is_held_out, keys, make_task, run_calc
from trainer.tokenizer import Message, get_tokenizer

SINGLE_TURN = ["addition", "sort_digits", "reverse"]


def demo_turns(task, problem) -> list[str]:
    return [m.content for m in task.demonstration(problem) if m.role == "assistant"]


def problems(task, seed: int, n: int) -> list[Problem]:
    rng = random.Random(seed)
    return [task.generate(rng) for _ in range(n)]


@pytest.mark.parametrize("name", list(TASKS))
def test_demonstration_earns_full_reward(name):
    task = make_task(name)
    for problem in problems(task, seed=0, n=50):
        assert task.reward(problem, demo_turns(task, problem)) == 1.0


@pytest.mark.parametrize("name", list(TASKS))
def test_wrong_or_missing_answer_earns_zero(name):
    task = make_task(name)
    for problem in problems(task, seed=1, n=50):
        assert task.reward(problem, [problem.answer + "0"]) == 0.0
        assert task.reward(problem, []) == 0.0
        assert task.reward(problem, [problem.answer[:-1]]) == 0.0


@pytest.mark.parametrize("name", list(TASKS))
def test_surrounding_whitespace_is_tolerated_but_inner_is_not(name):
    task = make_task(name)
    problem = next(p for p in problems(task, seed=2, n=50) if len(p.answer) > 1)
    assert task.reward(problem, [f"  {problem.answer}\n"]) == 1.0
    assert task.reward(problem, [f"{problem.answer[0]} {problem.answer[1:]}"]) == 0.0


def test_answers_are_computed_correctly():
    assert make_task("addition").generate(random.Random(0)).answer.isdigit()
    for name, check in [
        ("addition", lambda p: int(p.answer) == sum(p.data)),
        ("sort_digits", lambda p: p.answer == "".join(sorted(p.key.removeprefix("sort:")))),
        ("reverse", lambda p: p.answer == p.key.removeprefix("reverse:")[::-1]),
        ("tool_calc", lambda p: int(p.answer) == p.data[0] * p.data[1]),
    ]:
        for p in problems(make_task(name), seed=3, n=30):
            assert check(p), p


@pytest.mark.parametrize("name", list(TASKS))
def test_generator_is_deterministic_per_seed_and_varies_across_seeds(name):
    task = make_task(name)
    assert problems(task, 7, 20) == problems(task, 7, 20)
    assert [p.key for p in problems(task, 7, 20)] != [p.key for p in problems(task, 8, 20)]


def test_user_messages_follow_exact_formats():
    p = make_task("addition").generate(random.Random(0))
    a, b = p.data
    assert p.messages == (Message("user", f"{a}+{b}="),)
    assert make_task("tool_calc").generate(random.Random(0)).key.endswith("=?")
    assert make_task("sort_digits").generate(random.Random(0)).key.startswith("sort:")
    assert make_task("reverse").generate(random.Random(0)).key.startswith("reverse:")


def test_addition_operands_stay_in_range_and_both_digit_counts_appear():
    digit_counts = Counter()
    for p in problems(make_task("addition", max_digits=2), seed=4, n=500):
        for x in p.data:
            assert 0 <= x <= 99
            digit_counts[len(str(x))] += 1
    assert set(digit_counts) == {1, 2}
    # Operands are uniform over 0..99, so one-digit ones are about 10%.
    assert 0.05 < digit_counts[1] / 1000 < 0.15


def test_string_task_lengths_and_alphabets_respect_params():
    for p in problems(make_task("sort_digits", min_len=2, max_len=4), seed=5, n=200):
        s = p.data[0]
        assert 2 <= len(s) <= 4 and s.isdigit()
    lengths = set()
    for p in problems(make_task("reverse"), seed=5, n=200):
        s = p.data[0]
        lengths.add(len(s))
        assert s.isalpha() and s.islower()
    assert lengths == {3, 4, 5, 6}


def test_tool_calc_full_episode_through_respond():
    task = make_task("tool_calc")
    problem = task.generate(random.Random(6))
    a, b = problem.data
    turns = [f"calc:{a}*{b}"]
    tool_reply = task.respond(problem, turns)
    assert tool_reply == str(a * b)
    turns.append(tool_reply)
    assert task.respond(problem, turns) is None
    assert task.reward(problem, turns) == 1.0
    assert task.max_turns == 2
    demo = task.demonstration(problem)
    assert [m.role for m in demo] == ["assistant", "tool", "assistant"]


def test_tool_calc_direct_answer_ends_episode_and_still_counts():
    task = make_task("tool_calc")
    problem = task.generate(random.Random(7))
    assert task.respond(problem, [problem.answer]) is None
    assert task.reward(problem, [problem.answer]) == 1.0
    # A tool call left unanswered is not a final answer.
    a, b = problem.data
    assert task.reward(problem, [f"calc:{a}*{b}"]) == 0.0


@pytest.mark.parametrize(
    "call", ["calc:12*", "calc:1/2", "calc:1234567*2", "calc: 1*2", "calc:1*2*3", "calc:-1*2", "calc:"]
)
def test_malformed_calc_calls_get_error(call):
    task = make_task("tool_calc")
    problem = task.generate(random.Random(8))
    assert task.respond(problem, [call]) == "error"


def test_calc_supports_plus_minus_times():
    assert run_calc("calc:12+30") == "42"
    assert run_calc("calc:3-10") == "-7"
    assert run_calc(" calc:999999*999999 ") == str(999999 * 999999)
    assert run_calc("42") is None


def test_single_turn_tasks_never_respond():
    for name in SINGLE_TURN:
        task = make_task(name)
        problem = task.generate(random.Random(0))
        assert task.max_turns == 1
        assert task.respond(problem, [problem.answer]) is None


@pytest.mark.parametrize("name", list(TASKS))
def test_preamble_is_shared_and_exactly_the_requested_length(name):
    task = make_task(name, preamble_chars=300)
    ps = problems(task, seed=9, n=10)
    systems = {p.messages[0] for p in ps}
    assert len(systems) == 1
    (system,) = systems
    assert system.role == "system" and len(system.content) == 300
    assert all(p.messages[1].role == "user" and len(p.messages) == 2 for p in ps)
    assert len(make_task(name, preamble_chars=7).generate(random.Random(0)).messages[0].content) == 7


@pytest.mark.parametrize("name", list(TASKS))
def test_all_generated_text_is_encodable(name):
    tok = get_tokenizer()
    task = make_task(name, preamble_chars=500)
    for p in problems(task, seed=10, n=30):
        tok.render(list(p.messages) + task.demonstration(p))


def test_task_mix_proportions_follow_weights():
    mix = TaskMix({"addition": 3.0, "reverse": 1.0, "sort_digits": 0.0})
    rng = random.Random(11)
    counts = Counter(mix.sample(rng).task for _ in range(4000))
    assert "sort_digits" not in counts
    assert 0.71 < counts["addition"] / 4000 < 0.79


def test_task_mix_passes_params_and_preamble_to_tasks():
    mix = TaskMix({"addition": 1}, params={"addition": {"max_digits": 1}}, preamble_chars=50)
    for p in (mix.sample(random.Random(s)) for s in range(50)):
        assert all(x <= 9 for x in p.data)
        assert len(p.messages[0].content) == 50


def test_eval_set_is_deterministic_unique_and_split_by_weight():
    mix = TaskMix({"addition": 2, "sort_digits": 1, "reverse": 1, "tool_calc": 0.01})
    first = mix.eval_set(40, seed=0)
    assert first == mix.eval_set(40, seed=0)
    assert first != mix.eval_set(40, seed=1)
    assert len(first) == 40 and len(keys(first)) == 40
    per_task = Counter(p.task for p in first)
    assert per_task["tool_calc"] >= 1
    assert per_task["addition"] == pytest.approx(2 * per_task["reverse"], abs=2)


def test_eval_set_fills_with_duplicates_only_when_space_is_exhausted():
    mix = TaskMix({"addition": 1}, params={"addition": {"max_digits": 1}})
    assert len(keys(mix.eval_set(100, seed=0))) == 100  # all 10*10 problems
    assert len(mix.eval_set(120, seed=0)) == 120


def test_held_out_keys_exclude_eval_prompts_from_training():
    mix = TaskMix({"addition": 1}, params={"addition": {"max_digits": 1}})
    held = keys(mix.eval_set(60, seed=0))
    assert all(is_held_out(p, held) for p in mix.eval_set(60, seed=0))
    rng = random.Random(12)
    train = [mix.sample(rng, exclude=held) for _ in range(300)]
    assert not any(is_held_out(p, held) for p in train)
    with pytest.raises(ValueError, match="excluded"):
        mix.sample(rng, exclude=keys(mix.eval_set(100, seed=0)))


def test_unknown_task_and_params_raise_with_valid_options():
    with pytest.raises(ValueError, match="valid tasks: addition, sort_digits, reverse, tool_calc"):
        make_task("division")
    with pytest.raises(ValueError, match="valid params: preamble_chars, max_digits"):
        make_task("addition", digits=3)
    with pytest.raises(ValueError, match="min_len=5 exceeds max_len=4"):
        make_task("reverse", min_len=5, max_len=4)
    with pytest.raises(ValueError, match="max_digits=7"):
        make_task("tool_calc", max_digits=7)
    with pytest.raises(ValueError, match="'division'"):
        TaskMix({"division": 1.0})


@pytest.mark.parametrize("weights", [{"addition": -1.0, "reverse": 2.0}, {"addition": 0.0}, {}])
def test_bad_weights_raise(weights):
    with pytest.raises(ValueError, match="weight"):
        TaskMix(weights)


def test_eval_set_needs_one_problem_per_task():
    with pytest.raises(ValueError, match="n=1"):
        TaskMix({"addition": 1, "reverse": 1}).eval_set(1, seed=0)

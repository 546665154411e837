"""When a campaign stops, and how long the rest will take.

The wall budget counts the rounds' run time, read back from the ledger, so a campaign killed at night
and resumed in the morning has spent what its runs took, not the hours it lay dead. Agent overhead per
round (planning, git, MLflow) is a second or two next to a training run and is not counted.
"""

from __future__ import annotations

from evolve.campaign.spec import BudgetSpec

RECENT = 3  # rounds whose mean predicts the next one: failures are short, healthy runs long


def stop_reason(budget: BudgetSpec, walls: list[float]) -> str:
    """Why the campaign must stop after the rounds whose run times are `walls`; "" to go on.

    A round that the wall budget cannot fit (by the recent mean) is not started: a run cut off by the
    budget teaches nothing and costs its whole length.
    """
    done = len(walls)
    if done >= budget.rounds:
        return f"round budget spent ({done} of {budget.rounds} rounds)"
    if budget.wall_s:
        spent, next_s = sum(walls), _recent_mean(walls)
        if spent + next_s > budget.wall_s:
            return (f"wall budget spent ({clock(spent)} of {clock(budget.wall_s)}; "
                    f"a round takes about {clock(next_s)})")
    return ""


def eta_s(budget: BudgetSpec, walls: list[float]) -> float:
    """Run time left if the remaining rounds take the recent mean, capped by the wall budget."""
    left = (budget.rounds - len(walls)) * _recent_mean(walls)
    if budget.wall_s:
        left = min(left, max(0.0, budget.wall_s - sum(walls)))
    return left


def _recent_mean(walls: list[float]) -> float:
    recent = walls[-RECENT:]
    return sum(recent) / len(recent) if recent else 0.0


def clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"

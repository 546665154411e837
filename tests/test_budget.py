from evolve.campaign.budget import clock, eta_s, stop_reason
from evolve.campaign.spec import BudgetSpec


def test_rounds_budget_stops_after_the_last_round():
    assert stop_reason(BudgetSpec(rounds=3), [1.0, 1.0]) == ""
    assert stop_reason(BudgetSpec(rounds=3), [1.0, 1.0, 1.0]).startswith("round budget spent (3 of 3")


def test_wall_budget_does_not_start_a_round_the_recent_mean_says_cannot_fit():
    budget = BudgetSpec(rounds=12, wall_s=600)
    assert stop_reason(budget, [35, 165, 215]) == ""  # 415 spent, next ~138: fits
    reason = stop_reason(budget, [35, 165, 215, 215])  # 630 spent
    assert reason.startswith("wall budget spent (10m30s of 10m00s")
    # 450 spent and the next round should take mean(100, 100, 150) = 116.7: 566.7 fits 600, not 560
    assert stop_reason(budget, [100, 100, 100, 150]) == ""
    assert stop_reason(BudgetSpec(rounds=12, wall_s=560), [100, 100, 100, 150]).startswith("wall budget spent")


def test_eta_is_the_recent_mean_times_rounds_left_capped_by_the_wall_budget():
    assert eta_s(BudgetSpec(rounds=10), [2.0, 4.0]) == 8 * 3.0
    assert eta_s(BudgetSpec(rounds=10, wall_s=10), [2.0, 4.0]) == 4.0
    assert eta_s(BudgetSpec(rounds=10), []) == 0.0
    assert clock(75) == "1m15s" and clock(3725) == "1h02m"

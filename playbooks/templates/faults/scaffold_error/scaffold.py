"""A reward-shaping hook with a typo: `rewrad` is not defined."""


def shape_reward(problem, turns, reward):
    return rewrad * 2.0  # noqa: F821

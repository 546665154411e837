"""Reward shaping with a length bonus meant to be in [0, 1] but written in raw character units x 1e6."""


def shape_reward(problem, turns, reward):
    return reward + 1e6 * len(turns[-1])

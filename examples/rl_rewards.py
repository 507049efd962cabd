"""Example reward functions for the RL recipes (examples/rloo.yaml, examples/ppo.yaml), named in a recipe as
`examples/rl_rewards.py:concise`. A reward function takes the prompts and the sampled answers (as text) and
returns one float per answer; write your own the same way."""

CONCISE_WORDS = 24


def concise(prompts: list, completions: list[str]) -> list[float]:
    """Short answers: 1 for an empty answer, falling linearly to 0 at `CONCISE_WORDS` words or more. The 135M
    chat model answers most questions at length, but a short answer is among its samples often enough for RL to
    learn in minutes; the KL penalty keeps the answers close to the model's own wording."""
    return [1.0 - min(len(c.split()), CONCISE_WORDS) / CONCISE_WORDS for c in completions]

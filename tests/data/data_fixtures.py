"""Shared test data: the elimination config of the data tests."""

from mrt_jax.data import elimination

TASK_CONFIG = elimination.EliminationConfig(num_candidates=7, num_clues=4, waste_prob=0.5)

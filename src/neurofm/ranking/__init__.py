"""Challenge-style ranking of models on the tidy results table, and the leaderboard built on it."""

from neurofm.ranking.leaderboard import (
    Leaderboard,
    TaskBoard,
    build_leaderboard,
    task_board,
    write_leaderboard,
)
from neurofm.ranking.methods import (
    TIE_DECIMALS,
    aggregate_then_rank,
    competition_rank,
    final_ranking,
    kendall_tau,
    pairwise_wins,
    rank_stability,
    rank_then_aggregate,
    test_based_ranking,
)

__all__ = [
    "TIE_DECIMALS",
    "Leaderboard",
    "TaskBoard",
    "aggregate_then_rank",
    "build_leaderboard",
    "competition_rank",
    "final_ranking",
    "kendall_tau",
    "pairwise_wins",
    "rank_stability",
    "rank_then_aggregate",
    "task_board",
    "test_based_ranking",
    "write_leaderboard",
]

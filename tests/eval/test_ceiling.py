"""The task-label ceiling references on synthetic tables where the answer is known."""
from __future__ import annotations

import numpy as np

from eval.ceiling import ceiling, to_markdown
from routers.data import RoutingTable


def _table(within_signal: bool, n: int = 600, seed: int = 0) -> tuple[RoutingTable, np.ndarray]:
    """Two tasks, two equally priced experts plus a dear one. Task A favours expert 0, task B expert 1.
    With ``within_signal`` the first embedding coordinate also decides, within each task, which cheap
    expert is right; without it the within-task outcome is a coin flip the features cannot see."""
    rng = np.random.default_rng(seed)
    tasks = np.array(["a", "b"])[rng.integers(0, 2, n)]
    X = rng.normal(size=(n, 8))
    X[:, 1] += np.where(tasks == "a", 3.0, -3.0)
    hard = X[:, 0] > 0 if within_signal else rng.random(n) < 0.5
    fav = np.where(tasks == "a", 0, 1)
    winner = np.where(hard, 1 - fav, fav)
    scores = np.zeros((n, 3))
    scores[np.arange(n), winner] = 1.0
    scores[:, 2] = rng.random(n) < 0.5
    scores[:, :2] = np.where(rng.random((n, 2)) < 0.8 if within_signal else np.ones((n, 2), bool),
                             scores[:, :2], 1 - scores[:, :2])
    costs = np.tile([1.0, 1.0, 10.0], (n, 1))
    table = RoutingTable("synthetic", [f"prompt {i} {tasks[i]}" for i in range(n)], np.arange(n) % 5,
                         list(tasks), ["e0", "e1", "dear"], scores, costs)
    return table, X


def test_no_within_task_signal_means_task_mean_is_the_ceiling():
    table, X = _table(within_signal=False)
    refs = ceiling(table, X)["references"]
    # the knn reference cannot beat the task mean by more than noise when outcomes are coin flips
    assert refs["task+knn"]["auc"] <= refs["task-mean"]["auc"] + 0.02
    assert "| task-mean |" in to_markdown(ceiling(table, X))


def test_within_task_signal_is_found_by_the_knn_reference():
    table, X = _table(within_signal=True)
    refs = ceiling(table, X)["references"]
    assert refs["task+knn"]["auc"] > refs["task-mean"]["auc"] + 0.05

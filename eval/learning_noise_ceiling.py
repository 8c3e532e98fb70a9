"""How much of the gap closed a noisy judge costs knn when every prompt is fully labelled (issue 20).

    python -m eval.learning_noise_ceiling            # llmrouter, held-out fold 0, seeds 0-4

Random training prompts, all models' grades, 10% of grades flipped (1 - score) or not; knn at each k,
the best k on the held-out fold for each (optimistic for both). This bounds what the learning loop's
labels can give under the same noise: the loop labels fewer prompts, partially, within its budget.
"""
from __future__ import annotations

import argparse

import numpy as np

from eval.learning_sim import Measure
from routers.knn import KNNRouter

KS = (10, 20, 40, 80, 160, 320)


def main(argv=None) -> int:
    from eval.harness import embed_table
    from eval.tables import load_eval_table
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", default="../shared/data/bench/llmrouter.csv")
    p.add_argument("--held-fold", type=int, default=0)
    p.add_argument("--flip", type=float, default=0.1)
    p.add_argument("--sizes", default="240,480,960,0", help="labelled prompts (0: every training prompt)")
    p.add_argument("--seeds", type=int, default=5)
    args = p.parse_args(argv)
    table = load_eval_table(args.table)
    X = embed_table(table)
    held = table.folds == args.held_fold
    S = table.scores
    measure = Measure(S[held], table.costs[held], list(table.models))
    train = np.flatnonzero(~held)
    print(f"| labelled prompts | clean, best k | {args.flip:.0%} flipped, best k | loss |")
    print("| --- | --- | --- | --- |")
    for size in (int(s) for s in args.sizes.split(",")):
        n = size or len(train)
        clean, noisy = [], []
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            idx = rng.choice(train, size=min(n, len(train)), replace=False)
            Y = S[idx]
            Yn = np.where(rng.random(Y.shape) < args.flip, 1 - Y, Y)
            for out, labels in ((clean, Y), (noisy, Yn)):
                out.append([measure.gap(KNNRouter(k=min(k, n)).fit(X[idx], labels).predict_scores(X[held]))
                            for k in KS])
        c, f = np.mean(clean, axis=0), np.mean(noisy, axis=0)
        print(f"| {n} | {c.max():.3f} (k={KS[int(c.argmax())]}) | {f.max():.3f} (k={KS[int(f.argmax())]}) | "
              f"{(c.max() - f.max()) / c.max():.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Does a small non-linear head on the static mean route better than the linear map? (issue 19)

    python -m eval.static_mlp_head_eval llmrouter --init ISOLATED.npy --routers knn

For each fold ``f`` of the table (cross-fitted as in ``eval.static_tuned_eval``): the linear map of the
isolated-token table is fitted on the other folds' prompts (what ``static-tuned`` ships), and a residual
MLP head (``mean + MLP(mean)``, one hidden layer, cosine loss to MiniLM's embedding) is trained on the
same prompts' mapped means. Reports the held-out cosine to MiniLM and each router's pooled out-of-fold
auc with MiniLM, the linear map and the head. ``ISOLATED.npy``: ``post_process(token_vectors(model_dir),
pca_dims=None)`` from ``router_gateway.embedding.static_backend`` (~40 s on one core).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from eval import static_tuned_eval as S
from eval.harness import embed_table, fold_ids, log
from eval.tables import load_eval_table
from router_gateway.embedding.base import normalise
from router_gateway.embedding.static_tuning import linear_start, mean_rows
from router_gateway.embedding.tuned_static import MAX_TOKENS


def fit_head(X: np.ndarray, Y: np.ndarray, hidden: int = 512, epochs: int = 60, lr: float = 1e-3,
             weight_decay: float = 1e-4, seed: int = 0):
    """A residual head ``x + MLP(x)`` (output layer zero at start: it begins as the linear map), trained
    with AdamW on 1 - cosine to the targets; returns a numpy-in, numpy-out function."""
    import torch
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    Xt, Yt = torch.from_numpy(np.asarray(X, np.float32)), torch.from_numpy(np.asarray(Y, np.float32))
    net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], hidden), torch.nn.GELU(), torch.nn.Linear(hidden, Y.shape[1]))
    torch.nn.init.zeros_(net[2].weight)
    torch.nn.init.zeros_(net[2].bias)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(X)))
        for s in range(0, len(X), 128):
            b = order[s:s + 128]
            loss = (1 - torch.nn.functional.cosine_similarity(Xt[b] + net(Xt[b]), Yt[b], dim=1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()

    def apply(Z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            Zt = torch.from_numpy(np.asarray(Z, np.float32))
            return (Zt + net(Zt)).numpy()
    return apply


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tables", nargs="+")
    p.add_argument("--init", required=True, help=".npy isolated-token table (vocab, dim)")
    p.add_argument("--routers", default="knn")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--epochs", type=int, default=60)
    args = p.parse_args(argv)
    init = np.load(args.init)
    results = {}
    for name in args.tables:
        table = load_eval_table(S.DATA / "bench" / f"{name}.csv")
        folds = fold_ids(table, 5, 0)
        Y = embed_table(table, "torch")
        enc = S.encode(table.prompts, MAX_TOKENS)
        linear, head, cosine = {}, {}, {"linear": [], "head": []}
        for f in np.unique(folds):
            train, test = np.flatnonzero(folds != f), folds == f
            means = mean_rows(linear_start([enc[i] for i in train], Y[train], init), enc)
            t0 = time.perf_counter()
            linear[int(f)] = normalise(means.copy())
            head[int(f)] = normalise(fit_head(means[train], Y[train], args.hidden, args.epochs)(means))
            for label, E in (("linear", linear[int(f)]), ("head", head[int(f)])):
                cosine[label].append(float((E[test] * normalise(Y[test])).sum(1).mean()))
            log(f"{name} fold {f}: head in {time.perf_counter() - t0:.0f} s, held-out cosine to MiniLM "
                f"linear {cosine['linear'][-1]:.4f}, head {cosine['head'][-1]:.4f}")
        out = results[name] = {"cosine": {k: round(float(np.mean(v)), 4) for k, v in cosine.items()}}
        embeddings = {"minilm": lambda f, E=Y: E, "linear": lambda f, E=linear: E[int(f)],
                      "head": lambda f, E=head: E[int(f)]}
        for router in args.routers.split(","):
            for label, X_of_fold in embeddings.items():
                auc = S.score(S.oof_predictions(router, X_of_fold, table, folds, 0), table)["auc"]
                out.setdefault(router, {})[label] = round(float(auc), 4)
                log(f"{name} {router} {label}: auc {auc:.4f}")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

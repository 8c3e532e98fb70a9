"""How often one retrain's gate lets a candidate on shuffled labels through, per ``gate.signal``.

    python -m eval.gate_false_pass --seeds 150

The unit tests' three-topic labels (tests/support/learning_data), shuffled across prompts, one retrain
per seed with ``confirm: 1`` (so a pass is a promotion). A candidate on shuffled labels is
exchangeable with its controls whatever the statistic, so this is the per-retrain false-pass rate; the
shipped ``confirm: 2`` needs two passes in a row.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from router_gateway.learning.settings import GateSettings
from router_gateway.learning.store import LabelStore
from tests.support.learning_data import fill, make_loop, topic_data


def passes(signal: str, seed: int) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        store = LabelStore(Path(tmp) / "log.db")
        X, Y = topic_data(300, seed)
        fill(store, X, Y[np.random.default_rng(seed + 1000).permutation(300)])
        loop, _ = make_loop(Path(tmp), store, gate_settings=GateSettings(min_rows=20, confirm=1, signal=signal))
        loop.labels_added(300)
        passed = loop.retrain().gate.passed
        store.close()
        return passed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=150)
    p.add_argument("--signals", default="decisions,residual,either")
    args = p.parse_args(argv)
    print("| gate.signal | shuffled candidates passed | seeds |")
    print("| --- | --- | --- |")
    for signal in args.signals.split(","):
        hits = [s for s in range(args.seeds) if passes(signal, s)]
        print(f"| {signal} | {len(hits)} / {args.seeds} ({len(hits) / args.seeds:.1%}) | {', '.join(map(str, hits))} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

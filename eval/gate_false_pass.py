"""How often one retrain's gate lets a candidate on shuffled labels through, per ``gate.signal``.

    python -m eval.gate_false_pass --seeds 1000 --null-z 2.33 --residual-null-z 3.0

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


def passes(signal: str, seed: int, null_z: float, residual_null_z: float) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        store = LabelStore(Path(tmp) / "log.db")
        X, Y = topic_data(300, seed)
        fill(store, X, Y[np.random.default_rng(seed + 1000).permutation(300)])
        settings = GateSettings(min_rows=20, confirm=1, signal=signal, null_z=null_z, residual_null_z=residual_null_z)
        loop, _ = make_loop(Path(tmp), store, gate_settings=settings)
        loop.labels_added(300)
        passed = loop.retrain().gate.passed
        store.close()
        return passed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=1000)
    p.add_argument("--signals", default="decisions,residual,either")
    p.add_argument("--null-z", default="2.33", help="learning.promote.gate.null_z values, comma-separated")
    p.add_argument("--residual-null-z", default="3.0", help="gate.residual_null_z values, comma-separated")
    args = p.parse_args(argv)
    print("| gate.signal | null_z | residual_null_z | shuffled candidates passed | seeds |")
    print("| --- | --- | --- | --- | --- |")
    for signal in args.signals.split(","):
        for z in map(float, args.null_z.split(",")):
            for zr in map(float, args.residual_null_z.split(",")):
                hits = [s for s in range(args.seeds) if passes(signal, s, z, zr)]
                shown = ", ".join(map(str, hits[:20])) + (", ..." if len(hits) > 20 else "")
                print(f"| {signal} | {z:g} | {zr:g} | {len(hits)} / {args.seeds} ({len(hits) / args.seeds:.1%}) | {shown} |",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

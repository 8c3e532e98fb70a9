"""CI variant of the soak benchmark (eval/soak.py): 20 s of 50 concurrent streams with 10% of
upstream calls failing. Correctness only: every request ends in a complete answer or a correct
error, and the request log holds exactly one record per request. No timing thresholds."""
from __future__ import annotations

import argparse

import pytest

from eval.soak import run


@pytest.mark.slow
def test_soak_short(tmp_path):
    result = run(argparse.Namespace(duration=20.0, concurrency=50, fail_rate=0.1, warmup=0.3,
                                    workdir=str(tmp_path)))
    print(f"\nsoak (CI): {result['requests']} requests, {result['requests_per_s']} req/s, "
          f"outcomes {result['outcomes']}, RSS growth {result['rss_growth_after_warmup']:+.1%}")
    assert result["requests"] > 100
    assert result["incorrect"] == 0, result["outcomes"]
    assert result["log_matches"], (result["log_records"], result["requests"], result["missing_ids"])
    assert result["outcomes"].get("ok", 0) > 0.8 * result["requests"]

"""``router-gateway learning export`` writes the label store in the routing-table format."""
import csv

import numpy as np

from router_gateway.cli import main
from router_gateway.learning.graders import Grade
from router_gateway.learning.store import LabelStore
from tests.support.configs import config_text, expert


def test_export_writes_routing_table(tmp_path):
    config = tmp_path / "experts.yaml"
    config.write_text(config_text({"a": expert("http://x/v1", "a", 1, 1), "b": expert("http://x/v1", "b", 2, 2)},
                                  log_path="log.db"))
    store = LabelStore(tmp_path / "log.db")
    store.add("d1", np.ones(4), [Grade("a", 1.0, "reference"), Grade("b", 0.0, "judge:a", 0.001)],
              answer_costs={"a": 0.0, "b": 0.002}, prompt="2+2?")
    store.close()
    assert main(["learning", "export", "--config", str(config), "--out", str(tmp_path / "labels.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "labels.csv")))
    assert rows == [{"prompt": "2+2?", "digest": "d1", "fold": rows[0]["fold"], "task": "live",
                     "score:a": "1.0", "score:b": "0.0", "cost:a": "0.0", "cost:b": "0.002"}]

"""The import rules of the house (tests/support/import_graph.py): no cycles, imports run down the layers."""
from __future__ import annotations

from pathlib import Path

from tests.support.import_graph import against_layers, cycles, edges, main
from tests.support.tree import write_tree

ROOT = Path(__file__).resolve().parents[1]


def test_the_project_has_no_import_cycle_and_no_import_against_the_layers():
    graph = edges(ROOT)
    assert "router_gateway.pipeline" in graph and "router_gateway.api.chat" in graph  # it saw the real tree
    assert cycles(graph) == []
    assert against_layers(graph) == []



def test_the_check_fails_on_a_cycle_hidden_inside_a_function(tmp_path, capsys):
    write_tree(tmp_path, {
        "router_gateway/__init__.py": "",
        "router_gateway/state/__init__.py": "",
        "router_gateway/state/a.py": "from router_gateway.state.b import thing\n",
        "router_gateway/state/b.py": "def thing():\n    from router_gateway.state import a  # hidden\n    return a\n",
    })
    graph = edges(tmp_path)
    assert cycles(graph) == [["router_gateway.state.a", "router_gateway.state.b"]]
    assert main(tmp_path) == 1
    assert "cycle: router_gateway.state.a <-> router_gateway.state.b" in capsys.readouterr().out


def test_the_check_fails_on_an_import_up_the_layers(tmp_path):
    write_tree(tmp_path, {
        "router_gateway/__init__.py": "",
        "router_gateway/domain/__init__.py": "",
        "router_gateway/domain/errors.py": "from router_gateway.pipeline import ChatService\n",
        "router_gateway/pipeline.py": "from .domain.errors import *\n",  # relative imports resolve too
        "routers/__init__.py": "import router_gateway\n",
    })
    graph = edges(tmp_path)
    assert against_layers(graph) == [
        "router_gateway.domain.errors (layer 10) -> router_gateway.pipeline (layer 50)",
        "routers (layer 0) -> router_gateway (layer 0)"]
    assert cycles(graph) == [["router_gateway.domain.errors", "router_gateway.pipeline"]]

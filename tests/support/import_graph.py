"""The project's import graph and its rules: no cycles, and imports run down the layers.

Every import statement counts, those inside functions and ``if TYPE_CHECKING:`` blocks too: an import
hidden in a function is still a dependency, and hiding one is how cycles survived before.

    python -m tests.support.import_graph      # prints cycles and imports against the layers; exit 1 if any
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGES = ("router_gateway", "routers", "eval")

#: a module may import modules of its own layer or below, never above; the longest prefix decides.
#: Reading down: the CLI (the front door to both the gateway and its evaluation), eval (which measures
#: the gateway from above and is never imported by it), the app that wires the container to the api, the api, the request
#: pipeline, what it composes (routing, forwarding, feature packages), the state they keep, and the
#: domain everyone speaks. A feature's ``settings`` module sits in the domain because the config holds it.
LAYERS: dict[str, int] = {
    "router_gateway.cli": 100, "router_gateway.commands": 100,
    "eval": 90,
    "router_gateway.app": 70, "router_gateway.container": 70,
    "router_gateway.api": 60,
    "router_gateway.pipeline": 50,
    "router_gateway.learning": 40, "router_gateway.observability": 40, "router_gateway.cascade": 40,
    "router_gateway.training": 40, "router_gateway.runtime": 40,
    "router_gateway.routing": 30, "router_gateway.forwarding": 30,
    "router_gateway.state": 20, "router_gateway.capacity": 20, "router_gateway.embedding": 20,
    "router_gateway.http": 15,  # the HTTP client: forwarding, health checks and capacity's scrapes use it
    "router_gateway.domain": 10, "router_gateway.cascade.settings": 10, "router_gateway.learning.settings": 10,
    "router_gateway": 0,
    "routers": 0,  # the routers are a library of their own: they never import the gateway (checked below)
}


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def edges(root: Path) -> dict[str, set[str]]:
    """module -> the project modules it imports (relative imports resolved, packages' own parents skipped)."""
    mods = modules(root)

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8-sig"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                names = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for name in names:
                target = resolve(name)
                if target and target != mod and not mod.startswith(target + "."):
                    graph[mod].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def layer(module: str) -> int:
    best = max((prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")), key=len)
    return LAYERS[best]


def against_layers(graph: dict[str, set[str]]) -> list[str]:
    """Imports from a lower layer up to a higher one, and any import of the gateway by ``routers``."""
    bad = []
    for mod, targets in graph.items():
        for target in sorted(targets):
            upward = layer(target) > layer(mod)
            routers_into_gateway = mod.startswith("routers") and target.startswith("router_gateway")
            if upward or routers_into_gateway:
                bad.append(f"{mod} (layer {layer(mod)}) -> {target} (layer {layer(target)})")
    return bad


def main(root: Path) -> int:
    graph = edges(root)
    found, bad = cycles(graph), against_layers(graph)
    for group in found:
        print("cycle:", " <-> ".join(group))
    for line in bad:
        print("against the layers:", line)
    print(f"{len(graph)} modules, import cycles: {len(found)}, imports against the layers: {len(bad)}")
    return 1 if found or bad else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()))

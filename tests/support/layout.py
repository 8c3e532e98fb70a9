"""The tests' own layout: test modules share code through tests/support only, never by importing each other.

A helper imported from another test module (or from a conftest) couples two suites: moving or renaming a test
breaks an unrelated one, and pytest may collect the imported tests twice. Fixtures still come from conftest
files, through pytest. Every import statement counts, those inside functions too.

    python -m tests.support.layout      # prints each violation; exit 1 if any
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = "tests.support"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(root: Path, path: Path) -> list[tuple[int, list[str]]]:
    """(line, modules) of every import statement of the file, relative imports resolved. For ``from a import
    b, c`` the modules are ``a``, ``a.b`` and ``a.c``: ``b`` may be a module (``from tests import conftest``)."""
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, [alias.name]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.append((node.lineno, [base] + [f"{base}.{a.name}" for a in node.names if a.name != "*"]))
    return found


def _exists(root: Path, module: str) -> bool:
    path = root.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _is_test_module(module: str) -> bool:
    return module.startswith("tests.") and not (module == SUPPORT or module.startswith(SUPPORT + "."))


def modules_outside_support(root: Path) -> list[Path]:
    """Every module under tests/ but the shared support package."""
    support = root / "tests" / "support"
    return [p for p in sorted((root / "tests").rglob("*.py")) if support not in p.parents]


def violations(root: Path) -> list[str]:
    """Imports of a module under tests/ other than tests.support, from anywhere under tests/ (support
    included); and helper modules kept outside tests/support."""
    out = []
    for path in sorted((root / "tests").rglob("*.py")):
        for line, modules in imported(root, path):
            wrong = [m for m in modules if _is_test_module(m)]
            if wrong:  # name the module imported: ``a.b`` when it is one (a file or package), else ``a``
                named = next((m for m in wrong[1:] if _exists(root, m)), wrong[0])
                out.append(f"{path.relative_to(root)}:{line} imports {named}")
    for path in modules_outside_support(root):
        if not (path.name.startswith("test_") or path.name in ("conftest.py", "__init__.py")):
            out.append(f"{path.relative_to(root)} is a helper module outside tests/support")
    return out


def main(root: Path = ROOT) -> int:
    found = violations(root)
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

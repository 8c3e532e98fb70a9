"""The ``router-gateway`` command line: one subcommand per module in ``router_gateway.commands``.

Each command module defines ``register(subparsers)`` (adds its parser and sets ``func``) and keeps
heavy imports inside its run function, so ``router-gateway --help`` stays instant.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import router_gateway.commands as commands_pkg


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="router-gateway",
                                     description="A model-level routing gateway for many LLMs.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands_pkg.__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Subcommands of ``router-gateway``; each module defines ``register(subparsers)``."""

"""Safe YAML reading for experts.yaml: line numbers for every key, no aliases, bounded size.

Aliases are refused outright: they are what YAML bombs ("billion laughs") are made of, and a
registry file never needs them. Size is bounded three ways (bytes, values, nesting depth) so a
file that validates can neither take seconds to parse nor overflow a recursive walk later. ``${VAR}`` / ``${VAR:-default}`` are substituted in string values.
"""
from __future__ import annotations

import os
import re
from typing import Any

import yaml

MAX_CONFIG_BYTES = 1 << 20
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key and, where known, the line."""


class EnvVarError(ConfigError):
    """A ``${VAR}`` reference to an unset variable; ``path`` locates it in the file."""

    def __init__(self, path: tuple, message: str):
        super().__init__(message)
        self.path = path


# libyaml when present: the pure-Python scanner took 13 to 40 s on 200k list items in under 1 MB
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_NODES = 10_000  # values (scalars, lists, mappings) in one file; 100 experts take about 2,000
MAX_DEPTH = 32  # nesting levels; the schema needs 5, router params a few more


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe loader that refuses duplicate keys (aliases and size are checked before, on the events)."""

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node, deep=False):  # type: ignore[override]
        """A scalar that matches a type but cannot be built (an integer of 5,000 digits, a date
        with month 13) is a config error naming its line, not a traceback."""
        try:
            return super().construct_object(node, deep=deep)
        except ConfigError:
            raise
        except (ValueError, OverflowError) as exc:
            raise ConfigError(f"line {node.start_mark.line + 1}: cannot read this value: {exc}") from None


def _check_events(text: str) -> None:
    """One pass over the parser's events, before any tree is built: refuse aliases (YAML bombs),
    more than MAX_NODES values and nesting deeper than MAX_DEPTH. It stops at the first excess, so
    its cost is bounded whatever the file holds."""
    nodes = depth = 0
    for event in yaml.parse(text, Loader=_BaseLoader):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            raise ConfigError(f"line {line}: YAML aliases (*{event.anchor}) are not allowed")
        if isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            nodes += 1
            if nodes > MAX_NODES:
                raise ConfigError(f"line {line}: more than {MAX_NODES} values in one file")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(f"line {line}: nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def read_yaml(text: str, source: str = "<config>") -> tuple[Any, dict[tuple, int]]:
    """Parse YAML text; returns (data, {key path tuple: 1-based line})."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        _check_events(text)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply") from None
    lines: dict[tuple, int] = {}
    if node is not None:
        _collect_lines(node, (), lines)
    return data, lines


def _collect_lines(node: yaml.Node, path: tuple, lines: dict[tuple, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[path + (key,)] = key_node.start_mark.line + 1
            _collect_lines(value_node, path + (key,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _collect_lines(item, path + (i,), lines)


def substitute_env(data: Any, path: tuple = (), env: dict[str, str] | None = None) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in string values; unset without default is an error."""
    env = os.environ if env is None else env
    if isinstance(data, dict):
        return {k: substitute_env(v, path + (k,), env) for k, v in data.items()}
    if isinstance(data, list):
        return [substitute_env(v, path + (i,), env) for i, v in enumerate(data)]
    if isinstance(data, str) and "${" in data:
        def repl(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise EnvVarError(path, f"{format_path(path)}: environment variable {name} is not set")
        return _ENV_REF.sub(repl, data)
    return data


def format_path(path: tuple) -> str:
    return ".".join(str(p) for p in path) or "<root>"


def line_of(lines: dict[tuple, int], path: tuple) -> int | None:
    """Line of the deepest known prefix of ``path``."""
    for cut in range(len(path), -1, -1):
        if path[:cut] in lines:
            return lines[path[:cut]]
    return None

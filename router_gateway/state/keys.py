"""API keys: stored as SHA-256 hashes in a JSON file, with scopes, limits, budgets and allow-lists.

A key is ``rg-`` plus 32 random bytes (url-safe base64). Only its hash and a short display prefix are
stored; the secret is shown once, by ``router-gateway keys create``. Logs and errors name the key by
its id (``key_...``), never by the secret.

Where the file lives: ``$ROUTER_GATEWAY_KEYS`` if set, else ``keys.json`` next to the request log of
the config (``logging.path``), else ``var/keys.json``. The running gateway re-reads the file when it
changes (checked at most once a second), so keys created or revoked take effect without a restart.

Access control is on as soon as a keys file has been seen, and stays on for the life of the process:
a keys file that then goes missing, holds no keys, or cannot be read or validated *fails closed*
(``KeyStore.problem`` says why; every authenticated endpoint answers 503 until the file is valid
again). The only way to run without keys is to start the gateway with no keys file at all.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("router_gateway.state.keys")
PREFIX = "rg-"
SCOPES = ("admin", "user")
_RECHECK_S = 1.0


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class ApiKey:
    """One key's record (no secret): what it may do and how much."""

    id: str
    hash: str
    name: str = ""
    scopes: tuple[str, ...] = ("user",)
    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens per minute (prompt + completion, as the experts report them)
    budget_usd_day: float | None = None
    budget_usd_month: float | None = None
    allowed_experts: tuple[str, ...] = ()  # empty: every expert
    allowed_profiles: tuple[str, ...] = ()  # empty: every profile
    display: str = ""  # the first characters of the secret, to recognise a key in `keys list`
    created: float = field(default_factory=time.time)
    revoked: float | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    @property
    def has_limits(self) -> bool:
        return any(v is not None for v in (self.rpm, self.tpm, self.budget_usd_day, self.budget_usd_month))

    def public(self) -> dict[str, Any]:
        """The record without its hash, for listings."""
        data = asdict(self)
        data.pop("hash")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ApiKey":
        """A record from the keys file, validated (ValueError naming the field otherwise)."""
        if not isinstance(data, dict):
            raise ValueError("a key record must be an object")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("scopes", "allowed_experts", "allowed_profiles"):
            if key in known:
                if not isinstance(known[key] or [], (list, tuple)):
                    raise ValueError(f"{key}: a list is required")
                known[key] = tuple(known[key] or ())
        try:
            key = cls(**known)
        except TypeError as exc:  # a required field is missing
            raise ValueError(str(exc)) from None
        key.validate()
        return key

    def validate(self) -> None:
        """Limits that the limiter can enforce: rates are integers >= 0, budgets finite numbers >= 0
        (0 suspends the key: see services.limits); ids, hash and lists well formed."""
        if not isinstance(self.id, str) or not self.id:
            raise ValueError("id: a non-empty string is required")
        if not isinstance(self.hash, str) or len(self.hash) != 64:
            raise ValueError(f"{self.id}: hash: a SHA-256 hex digest is required")
        bad = set(self.scopes) - set(SCOPES)
        if bad:
            raise ValueError(f"{self.id}: unknown scope(s) {sorted(map(str, bad))}; known: {', '.join(SCOPES)}")
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{self.id}: {name}: an integer >= 0 is required, got {value!r}")
        for name in ("budget_usd_day", "budget_usd_month"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value < 0):
                raise ValueError(f"{self.id}: {name}: a finite number >= 0 is required, got {value!r}")
        for name in ("allowed_experts", "allowed_profiles"):
            if not all(isinstance(v, str) and v for v in getattr(self, name)):
                raise ValueError(f"{self.id}: {name}: names (strings) are required")


def default_keys_path(config_path: str | Path | None = None) -> Path:
    """``$ROUTER_GATEWAY_KEYS``, else keys.json beside the config's request log, else var/keys.json."""
    env = os.environ.get("ROUTER_GATEWAY_KEYS")
    if env:
        return Path(env)
    if config_path is not None:
        try:
            from router_gateway.domain.config import load_config
            return Path(load_config(config_path).logging.path).parent / "keys.json"
        except Exception:  # an unreadable config must not hide where keys would live
            pass
    return Path("var/keys.json")


class KeyFileError(Exception):
    """The keys file exists (or existed) but gives no usable keys: access control fails closed."""


class KeyStore:
    """Keys on disk, indexed by hash in memory; thread-safe; reloads when the file changes.

    ``required`` is whether callers must present a key: True once a keys file has been seen. While
    ``problem`` is set (the file went missing, is empty, unreadable or invalid) no key verifies.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._by_hash: dict[str, ApiKey] = {}
        self._mtime: tuple | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self._seen = False  # a keys file existed at some point: access control is on for good
        self.problem: str | None = None
        self.refresh(force=True)

    @classmethod
    def default(cls, config_path: str | Path | None = None) -> "KeyStore":
        return cls(default_keys_path(config_path))

    # -- reading ---------------------------------------------------------------------------
    def _load(self) -> None:
        """Read the file if it changed; KeyFileError if it gives no usable keys."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._by_hash, self._mtime = {}, None
            if self._seen:
                raise KeyFileError(f"keys file {self.path} was removed") from None
            return
        except OSError as exc:
            self._seen = True
            raise KeyFileError(f"keys file {self.path} cannot be read: {exc.strerror}") from None
        self._seen = True
        signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if signature == self._mtime:
            return
        try:
            keys = self._parse()
        except KeyFileError:
            self._by_hash, self._mtime = {}, None  # nothing verifies until the file is good again
            raise
        self._by_hash, self._mtime = {k.hash: k for k in keys}, signature  # one swap: readers never see a gap

    def _parse(self, allow_empty: bool = False) -> list[ApiKey]:
        try:
            data = orjson.loads(self.path.read_bytes())
        except OSError as exc:
            raise KeyFileError(f"keys file {self.path} cannot be read: {exc.strerror}") from None
        except orjson.JSONDecodeError as exc:
            raise KeyFileError(f"keys file {self.path} is not valid JSON ({exc})") from None
        records = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(records, list):
            raise KeyFileError(f"keys file {self.path} has no 'keys' list")
        if not records and not allow_empty:
            raise KeyFileError(f"keys file {self.path} holds no keys")
        try:
            return [ApiKey.from_dict(k) for k in records]
        except ValueError as exc:
            raise KeyFileError(f"keys file {self.path} has an invalid key: {exc}") from None

    def refresh(self, force: bool = False) -> None:
        """Re-read the file if it changed (at most once a second unless forced)."""
        now = time.monotonic()
        if not force and now - self._checked < _RECHECK_S:
            return
        self._checked = now
        with self._lock:
            try:
                self._load()
            except KeyFileError as exc:
                if self.problem != str(exc):
                    log.error("API keys unavailable, refusing every authenticated request: %s", exc)
                self.problem = str(exc)
                return
            if self.problem is not None:
                log.warning("API keys available again (%d keys): %s", len(self._by_hash), self.path)
            self.problem = None

    @property
    def required(self) -> bool:
        """Whether callers must present a key: once a keys file was seen it stays so (removing or
        emptying the file must lock the gateway, not open it)."""
        self.refresh()
        return self._seen

    def verify(self, secret: str) -> ApiKey | None:
        """The live key for a presented secret, or None (always None while the file is unusable)."""
        self.refresh()
        if not secret.startswith(PREFIX) or self.problem is not None:
            return None
        digest = hash_secret(secret)
        key = self._by_hash.get(digest)
        if key is None or key.revoked is not None or not hmac.compare_digest(key.hash, digest):
            return None
        return key

    def list(self) -> list[ApiKey]:
        self.refresh(force=True)
        if self.problem is not None:
            raise KeyFileError(self.problem)
        return sorted(self._by_hash.values(), key=lambda k: k.created)

    # -- writing (the CLI) -----------------------------------------------------------------
    def create(self, name: str = "", scopes: tuple[str, ...] = ("user",), **limits: Any) -> tuple[str, ApiKey]:
        """Create a key; returns (secret, record). The secret is not stored anywhere."""
        secret = PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(id="key_" + secrets.token_hex(6), hash=hash_secret(secret), name=name,
                     scopes=tuple(scopes), display=secret[:7] + "...", **limits)
        key.validate()  # a limit the limiter cannot enforce is refused here, not at the first request
        self._update(lambda keys: keys + [key])
        return secret, key

    def revoke(self, key_id: str) -> bool:
        found = False

        def change(keys: list[ApiKey]) -> list[ApiKey]:
            nonlocal found
            for k in keys:
                if k.id == key_id and k.revoked is None:
                    k.revoked, found = time.time(), True
            return keys
        self._update(change)
        return found

    def _update(self, change) -> None:
        import fcntl
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two `keys create` at once must not lose one
            with self._lock:
                # a broken file raises KeyFileError here: never overwrite keys we could not read
                present = self.path.exists() and self.path.stat().st_size > 0
                keys = change(self._parse(allow_empty=True) if present else [])
                data = orjson.dumps({"keys": [asdict(k) for k in keys]}, option=orjson.OPT_INDENT_2)
                tmp = self.path.with_suffix(".tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.path)  # readers see the old file or the new one, never half
                self._mtime = None
        self.refresh(force=True)


def presented_key(headers) -> str | None:
    """The secret from ``Authorization: Bearer <key>`` or ``x-api-key``."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return headers.get("x-api-key") or None

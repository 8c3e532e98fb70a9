"""API keys: stored as SHA-256 hashes in a JSON file, with scopes, limits, budgets and allow-lists.

A key is ``rg-`` plus 32 random bytes (url-safe base64). Only its hash and a short display prefix are
stored; the secret is shown once, by ``router-gateway keys create``. Logs and errors name the key by
its id (``key_...``), never by the secret.

Where the file lives: ``$ROUTER_GATEWAY_KEYS`` if set, else ``keys.json`` next to the request log of
the config (``logging.path``), else ``var/keys.json``. The running gateway re-reads the file when it
changes (checked at most once a second), so keys created or revoked take effect without a restart.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

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
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("scopes", "allowed_experts", "allowed_profiles"):
            if key in known:
                known[key] = tuple(known[key] or ())
        return cls(**known)


def default_keys_path(config_path: str | Path | None = None) -> Path:
    """``$ROUTER_GATEWAY_KEYS``, else keys.json beside the config's request log, else var/keys.json."""
    env = os.environ.get("ROUTER_GATEWAY_KEYS")
    if env:
        return Path(env)
    if config_path is not None:
        try:
            from router_gateway.config import load_config
            return Path(load_config(config_path).logging.path).parent / "keys.json"
        except Exception:  # an unreadable config must not hide where keys would live
            pass
    return Path("var/keys.json")


class KeyStore:
    """Keys on disk, indexed by hash in memory; thread-safe; reloads when the file changes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._by_hash: dict[str, ApiKey] = {}
        self._mtime: tuple | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self._load()

    @classmethod
    def default(cls, config_path: str | Path | None = None) -> "KeyStore":
        return cls(default_keys_path(config_path))

    # -- reading ---------------------------------------------------------------------------
    def _load(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._by_hash, self._mtime = {}, None
            return
        signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if signature == self._mtime:
            return
        data = orjson.loads(self.path.read_bytes() or b"{}")
        keys = [ApiKey.from_dict(k) for k in data.get("keys", [])]
        self._by_hash = {k.hash: k for k in keys}
        self._mtime = signature

    def refresh(self, force: bool = False) -> None:
        """Re-read the file if it changed (at most once a second unless forced)."""
        now = time.monotonic()
        if not force and now - self._checked < _RECHECK_S:
            return
        self._checked = now
        with self._lock:
            try:
                self._load()
            except (OSError, ValueError):  # a half-written or broken file keeps the keys we have
                pass

    def has_keys(self) -> bool:
        """Whether access control is on: once a key was created it stays on, even if all are revoked
        (revoking the last key must lock the gateway, not open it)."""
        self.refresh()
        return bool(self._by_hash)

    def verify(self, secret: str) -> ApiKey | None:
        """The live key for a presented secret, or None."""
        self.refresh()
        if not secret.startswith(PREFIX):
            return None
        digest = hash_secret(secret)
        key = self._by_hash.get(digest)
        if key is None or key.revoked is not None or not hmac.compare_digest(key.hash, digest):
            return None
        return key

    def list(self) -> list[ApiKey]:
        self.refresh(force=True)
        return sorted(self._by_hash.values(), key=lambda k: k.created)

    # -- writing (the CLI) -----------------------------------------------------------------
    def create(self, name: str = "", scopes: tuple[str, ...] = ("user",), **limits: Any) -> tuple[str, ApiKey]:
        """Create a key; returns (secret, record). The secret is not stored anywhere."""
        bad = set(scopes) - set(SCOPES)
        if bad:
            raise ValueError(f"unknown scope(s) {sorted(bad)}; known: {', '.join(SCOPES)}")
        secret = PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(id="key_" + secrets.token_hex(6), hash=hash_secret(secret), name=name,
                     scopes=tuple(scopes), display=secret[:7] + "...", **limits)
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
                self._mtime = None
                self._load()
                keys = change(list(self._by_hash.values()))
                data = orjson.dumps({"keys": [asdict(k) for k in keys]}, option=orjson.OPT_INDENT_2)
                tmp = self.path.with_suffix(".tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.path)  # readers see the old file or the new one, never half
                self._mtime = None
                self._load()


def presented_key(headers) -> str | None:
    """The secret from ``Authorization: Bearer <key>`` or ``x-api-key``."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return headers.get("x-api-key") or None


def check_model_allowed(key: ApiKey, model: str, config) -> None:
    """403 for a profile outside the key's allow-list (experts are masked in routing)."""
    from router_gateway.errors import PermissionDenied
    if key.allowed_profiles and model in config.profiles and model not in key.allowed_profiles:
        raise PermissionDenied(f"this API key may not use profile '{model}'", param="model")


def allowed_experts(key: ApiKey | None) -> set[str] | None:
    return set(key.allowed_experts) if key is not None and key.allowed_experts else None

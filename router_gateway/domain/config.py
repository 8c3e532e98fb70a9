"""experts.yaml: strict pydantic models, parsed in two phases.

Phase 1 parses each section strictly (unknown keys and bad values are errors naming key and line).
Phase 2 resolves names across sections (profiles name routers, routers name experts, fallbacks and
allow-lists name experts). A config that fails either phase is refused at boot or on reload.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from router_gateway.cascade.settings import CascadeSettings
from router_gateway.domain.config_checks import (
    check_header_value,
    check_http_url,
    check_no_control,
    check_url_path,
    reject_non_finite,
)
from router_gateway.domain.config_yaml import (
    ConfigError,
    EnvVarError,
    format_path,
    line_of,
    read_yaml,
    substitute_env,
)
from router_gateway.learning.settings import LearningSettings, check_learning
from routers.base import RouterError
from routers.registry import router_class

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"


class _Strict(BaseModel):
    # inf and NaN pass ``ge``/``le`` checks in surprising ways and break arithmetic later: never numbers here
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Price(_Strict):
    """USD per million tokens (at most $10,000: 15 times the dearest model listed today)."""

    input_per_mtok: float = Field(ge=0, le=10_000)
    output_per_mtok: float = Field(ge=0, le=10_000)

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


class Timeouts(_Strict):
    """Seconds. ``first_byte`` bounds the wait until the gateway can send the client its first byte:
    the first stream chunk, or the whole answer when not streaming. Until then a failure is retried
    on the next expert; after it, never."""

    connect: float = Field(default=3.0, gt=0, le=600)
    first_byte: float = Field(default=120.0, gt=0, le=3600)
    total: float = Field(default=600.0, gt=0, le=86400)


class Expert(_Strict):
    """One expert model behind an OpenAI-compatible endpoint (vLLM by default) or litellm."""

    provider: Literal["openai", "litellm"] = "openai"
    base_url: str
    model: str = Field(min_length=1)
    api_key: str | None = None
    price: Price
    context_window: int = Field(default=8192, ge=16, le=100_000_000)
    capabilities: tuple[str, ...] = Field(default=(), max_length=64)
    domains: tuple[str, ...] = Field(default=(), max_length=256)
    max_concurrency: int = Field(default=64, ge=1, le=100_000)
    prior_quality: float = Field(default=0.5, ge=0, le=1)
    timeout: Timeouts = Timeouts()
    fallbacks: tuple[str, ...] = Field(default=(), max_length=32)
    health_path: str = "/models"
    litellm_model: str | None = None  # e.g. "openai/<model>"; only for provider: litellm
    metrics_url: str | None = None  # the engine's Prometheus page (vLLM: http://host:port/metrics)

    @field_validator("base_url", "metrics_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    @field_validator("api_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        return check_header_value(value)

    @field_validator("model", "litellm_model")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return check_no_control(value)

    @field_validator("health_path")
    @classmethod
    def _health_path(cls, value: str) -> str:
        return check_url_path(value)

    def __repr__(self) -> str:  # never print the key
        return f"Expert(model={self.model!r}, base_url={self.base_url!r})"


class RouterSpec(_Strict):
    """A router instance: a baseline (no artifact) or a trained artifact directory."""

    type: str
    artifact: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    expert: str | None = None  # for type: fixed

    @field_validator("params")
    @classmethod
    def _finite(cls, value: dict[str, Any]) -> dict[str, Any]:
        return reject_non_finite(value)

    @field_validator("artifact")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return check_no_control(value)


class PacingSettings(_Strict):
    """Budget pacing for keys with a budget (router_gateway.capacity.pacing): the effective cost weight
    moves within [min_cost_weight, max_cost_weight] so spend follows the budget's period."""

    min_cost_weight: float = Field(default=0.0, ge=0, le=1000)
    max_cost_weight: float = Field(default=100.0, ge=0, le=1000)
    target: float = Field(default=0.97, gt=0, le=1)
    kp: float = Field(default=8.0, ge=0, le=1000)
    ki: float = Field(default=40.0, ge=0, le=10000)

    @model_validator(mode="after")
    def _bounds(self) -> "PacingSettings":
        if self.min_cost_weight > self.max_cost_weight:
            raise ValueError("min_cost_weight must not exceed max_cost_weight")
        return self


class ProfileBudget(_Strict):
    """A USD ceiling on what a profile serves (router_gateway.capacity.profile_budget), shared by replicas."""

    usd_per_day: float | None = Field(default=None, gt=0, le=1e12)
    usd_per_month: float | None = Field(default=None, gt=0, le=1e12)

    @model_validator(mode="after")
    def _some(self) -> "ProfileBudget":
        if self.usd_per_day is None and self.usd_per_month is None:
            raise ValueError("a budget needs usd_per_day or usd_per_month")
        return self


class AffinitySettings(_Strict):
    """Session affinity (services/sessions.py): a conversation keeps its expert while it stays eligible."""

    enabled: bool = True
    ttl_s: float = Field(default=1800.0, gt=0, le=7 * 86400)  # sliding: each turn extends it


class ProfileCanary(_Strict):
    """A second router that decides a share of the profile's requests (by a hash of the request id)."""

    router: str
    share: float = Field(ge=0, le=1)


class Profile(_Strict):
    """What clients put in ``model``: which router, how much cost matters, and input limits."""

    router: str
    cost_weight: float = Field(default=0.5, ge=0, le=1000)
    experts: tuple[str, ...] = ()  # allow-list; empty = all
    expected_output_tokens: int = Field(default=256, ge=1, le=10_000_000)
    max_messages: int = Field(default=256, ge=1, le=1_000_000)
    max_tokens: int | None = Field(default=None, ge=1, le=100_000_000)
    explore: float = Field(default=0.0, ge=0, le=1)
    cascade: CascadeSettings | None = None  # verified escalation (router_gateway/cascade)
    # quality given up per second of expected queueing at an expert (engine metrics); 0: ignore queues
    latency_weight: float = Field(default=0.0, ge=0, le=100)
    pacing: PacingSettings | None = None  # route cheaper as a key's (or this profile's) budget runs ahead
    budget: ProfileBudget | None = None  # hard ceiling on the profile's spend (and pacing's target)
    affinity: AffinitySettings = AffinitySettings()
    canary: ProfileCanary | None = None  # set by the learning loop while a candidate is on trial


class EmbedderSettings(_Strict):
    """Prompt embedder: backend, micro-batching and cache."""

    backend: Literal["auto", "torch", "onnx", "static", "static-tuned", "remote"] = "auto"
    model: str = "all-MiniLM-L6-v2"
    url: str | None = None
    api_key: str | None = None
    dim: int | None = Field(default=None, ge=1, le=65536)
    threads: int | None = Field(default=None, ge=1, le=64)
    cache_size: int = Field(default=4096, ge=0, le=10_000_000)
    max_batch: int = Field(default=32, ge=1, le=1024)
    max_wait_ms: float = Field(default=0.0, ge=0, le=1000)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        return check_no_control(value)

    @field_validator("api_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        return check_header_value(value)


class LoggingSettings(_Strict):
    """The request log: an embedded SQLite file in WAL mode, written in batches off the request path."""

    path: str = "var/requests.db"
    store_prompts: bool = True
    flush_interval_ms: int = Field(default=200, ge=10, le=60000)
    max_batch: int = Field(default=500, ge=1, le=1_000_000)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return check_no_control(value)


class BreakerConfig(_Strict):
    """Per-expert circuit breaker: consecutive failures that open it, seconds before a probe."""

    failure_threshold: int = Field(default=3, ge=1, le=1000)
    cooldown_s: float = Field(default=10.0, gt=0, le=3600)


class ServerSettings(_Strict):
    """Request limits, forwarding budget, health checking and shutdown."""

    max_body_bytes: int = Field(default=4 << 20, ge=1024, le=1 << 30)
    max_response_bytes: int = Field(default=64 << 20, ge=1024, le=1 << 32)  # an expert's plain answer; larger: 502
    max_header_bytes: int = Field(default=64 << 10, ge=1024, le=16 << 20)  # a request's headers; larger: 431
    request_read_timeout_s: float = Field(default=60.0, gt=0, le=3600)  # headers and body read within it
    max_attempts: int = Field(default=3, ge=1, le=10)
    request_deadline_s: float = Field(default=900.0, gt=0, le=86400)
    drain_timeout_s: float = Field(default=30.0, ge=0, le=3600)
    breaker: BreakerConfig = BreakerConfig()
    health_interval_s: float = Field(default=5.0, ge=0, le=3600)  # 0: no active health checks
    metrics_poll_s: float = Field(default=1.0, gt=0, le=300)  # engine metrics scrape interval


class GatewayConfig(_Strict):
    """The whole experts.yaml."""

    experts: dict[str, Expert]
    routers: dict[str, RouterSpec] = Field(default_factory=lambda: {"default": RouterSpec(type="strongest")})
    profiles: dict[str, Profile] = Field(default_factory=lambda: {"auto": Profile(router="default")})
    embedder: EmbedderSettings = EmbedderSettings()
    logging: LoggingSettings = LoggingSettings()
    server: ServerSettings = ServerSettings()
    learning: LearningSettings | None = None  # labels from live traffic (router_gateway.learning)

    @field_validator("experts", "routers", "profiles")
    @classmethod
    def _names(cls, value: dict) -> dict:
        import re
        for name in value:
            if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
                raise ValueError(f"{name!r} is not a valid name (letters, digits, . _ : / -)")
        return value

    @model_validator(mode="after")
    def _resolve(self) -> "GatewayConfig":
        """Phase 2: every cross-reference names something that exists."""
        if not self.experts:
            raise ValueError("experts: at least one expert is required")
        clash = set(self.experts) & set(self.profiles)
        if clash:
            raise ValueError(f"names used both as expert and profile: {sorted(clash)}")
        for name, expert in self.experts.items():
            for fb in expert.fallbacks:
                if fb not in self.experts:
                    raise ValueError(f"experts.{name}.fallbacks: unknown expert {fb!r}")
            if expert.provider == "litellm" and not expert.litellm_model:
                raise ValueError(f"experts.{name}.litellm_model: required when provider is litellm")
        for name, spec in self.routers.items():
            try:
                baseline = router_class(spec.type).baseline
            except RouterError as exc:
                raise ValueError(f"routers.{name}.type: {exc}") from None
            if baseline and spec.artifact:
                raise ValueError(f"routers.{name}.artifact: baseline {spec.type!r} takes no artifact")
            if not baseline and not spec.artifact:
                raise ValueError(f"routers.{name}.artifact: a trained router ({spec.type!r}) needs an artifact")
            if spec.type == "fixed" and spec.expert not in self.experts:
                raise ValueError(f"routers.{name}.expert: fixed router needs an existing expert, got {spec.expert!r}")
        for name, profile in self.profiles.items():
            if profile.router not in self.routers:
                raise ValueError(f"profiles.{name}.router: unknown router {profile.router!r}")
            if profile.canary is not None and profile.canary.router not in self.routers:
                raise ValueError(f"profiles.{name}.canary.router: unknown router {profile.canary.router!r}")
            for ex in profile.experts:
                if ex not in self.experts:
                    raise ValueError(f"profiles.{name}.experts: unknown expert {ex!r}")
            if profile.cascade and profile.cascade.judge and profile.cascade.judge not in self.experts:
                raise ValueError(f"profiles.{name}.cascade.judge: unknown expert {profile.cascade.judge!r}")
        if self.learning is not None:
            check_learning(self.learning, self.experts, self.profiles)
        return self


def parse_config(text: str, source: str = "<config>", base_dir: Path | None = None,
                 env: dict[str, str] | None = None) -> GatewayConfig:
    """Parse and resolve a config text; raises ConfigError with key path and line."""
    data, lines = read_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with an 'experts' key")
    try:
        data = substitute_env(data, env=env)
    except EnvVarError as exc:
        line = line_of(lines, exc.path)
        raise ConfigError(f"{source}:{line}: {exc}" if line else f"{source}: {exc}") from None
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, lines, source)) from None
    return _absolute_paths(config, base_dir) if base_dir else config


def load_config(path: str | Path, env: dict[str, str] | None = None) -> GatewayConfig:
    """Read experts.yaml from disk; relative artifact and log paths resolve against its folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    return parse_config(text, str(path), base_dir=path.resolve().parent, env=env)


def _describe(exc: ValidationError, lines: dict[tuple, int], source: str) -> str:
    out = []
    for err in exc.errors()[:20]:
        loc = tuple(err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        if not loc and message.split(":")[0].count("."):
            # phase-2 errors name their key path in the message ("profiles.auto.router: ...")
            loc = tuple(message.split(":")[0].split("."))
            message = message.split(": ", 1)[1]
        line = line_of(lines, loc)
        where = f"{source}:{line}" if line else source
        out.append(f"{where}: {format_path(loc)}: {message}" if loc else f"{where}: {message}")
    return "\n".join(out)


def _absolute_paths(config: GatewayConfig, base_dir: Path) -> GatewayConfig:
    routers = {name: spec.model_copy(update={"artifact": str((base_dir / spec.artifact).resolve())})
               if spec.artifact else spec for name, spec in config.routers.items()}
    log_path = str((base_dir / config.logging.path).resolve())
    update = {"routers": routers, "logging": config.logging.model_copy(update={"path": log_path})}
    if config.learning is not None:
        from router_gateway.learning.settings import absolute_paths
        update["learning"] = absolute_paths(config.learning, base_dir)
    return config.model_copy(update=update)


def redacted(config: GatewayConfig) -> dict[str, Any]:
    """The resolved config as a dict with secrets replaced, for printing."""
    data = config.model_dump(mode="json")
    for expert in data["experts"].values():
        if expert.get("api_key"):
            expert["api_key"] = "***"
    if data["embedder"].get("api_key"):
        data["embedder"]["api_key"] = "***"
    return data

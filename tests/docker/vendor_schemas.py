"""Regenerate the schemas vendored in tests/data/docker/ (run by hand; tests never touch the network).

    python tests/docker/vendor_schemas.py    # needs check-jsonschema, kubernetes-validate and ray installed

- compose-spec.json: the Compose specification schema, as vendored by check-jsonschema.
- ray-schema.json: the Ray cluster launcher schema shipped inside the ray package.
- k8s-defs.json: the closure of the Kubernetes definitions our manifests use (StatefulSet, Service, PodTemplateSpec)
  from kubernetes-validate's strict schemas (additionalProperties: false), refs rewritten to local ``#/$defs/..``.
The KubeRay schema (kuberay-v1.json) is written by hand from KubeRay's Go API types; see SOURCE.md.
"""

from __future__ import annotations

import json
import re
import shutil
from importlib import util
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "data" / "docker"
K8S_VERSION = "v1.37.0-local-strict"
ROOTS = ["io.k8s.api.apps.v1.StatefulSet", "io.k8s.api.core.v1.Service", "io.k8s.api.core.v1.PodTemplateSpec"]
_REF = re.compile(r"^(?:/api/)?_definitions\.json#/\$defs/(.+)$")


def _package_dir(name: str) -> Path:
    spec = util.find_spec(name)
    if spec is None or spec.origin is None:
        raise SystemExit(f"{name} is not installed: pip install it first")
    return Path(spec.origin).parent


def _closure(defs: dict, roots: list[str]) -> dict:
    seen: dict = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen[name] = defs[name]
        todo.extend(_refs(defs[name]))
    return seen


def _refs(node: object) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                match = _REF.match(value)
                found.append(match.group(1) if match else value.rsplit("/", 1)[-1])
            else:
                found.extend(_refs(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_refs(item))
    return found


def _localize(node: object) -> object:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                match = _REF.match(value)
                out[key] = f"#/$defs/{match.group(1)}" if match else value
            elif key == "description":
                continue  # descriptions are most of the bytes and validate nothing
            else:
                out[key] = _localize(value)
        return out
    if isinstance(node, list):
        return [_localize(item) for item in node]
    return node


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    cj = _package_dir("check_jsonschema") / "builtin_schemas" / "vendor"
    shutil.copyfile(cj / "compose-spec.json", OUT / "compose-spec.json")
    shutil.copyfile(_package_dir("ray") / "autoscaler" / "ray-schema.json", OUT / "ray-schema.json")
    kv = _package_dir("kubernetes_validate") / "kubernetes-json-schema" / K8S_VERSION / "_definitions.json"
    defs = json.loads(kv.read_text())["$defs"]
    closure = _closure(defs, ROOTS)
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"kubernetes-validate {K8S_VERSION}, closure of {', '.join(ROOTS)}; descriptions dropped",
        "$defs": _localize(closure),
    }
    (OUT / "k8s-defs.json").write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()

"""Offline checks of the Kubernetes manifests (``deploy/k8s``): no cluster needed.

Each kustomization (the base and both overlays) is rendered with ``kubectl kustomize``
and every object it produces is checked:

* built-in kinds against the OpenAPI schemas of ``KUBERNETES_VERSION`` (kubernetes-validate,
  strict: an unknown field is an error, as with ``kubectl apply --validate=strict``);
* Strimzi's kinds against the CRD schemas vendored in ``tests/deploy/schemas/strimzi``
  (see its SOURCE.md), made as strict as the API server's field validation;
* the deployment policy (``k8s_policy.py``), which also must fail, precisely, on the broken
  fixtures under ``tests/deploy/fixtures/k8s``;
* the network policies, evaluated as a cluster would: default deny, and only the allowed
  flows get through;
* the platform's own contract: topic names and ACLs from ``services.common.topology``,
  the projector's autoscaler bounded by the partition count, every ``SHUANGJIAN_*``
  variable a setting the code reads, one Kafka user per process.

Only the rendering needs ``kubectl`` (with its built-in kustomize); without it those tests
are skipped and the policy's own tests still run.
"""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic_settings import BaseSettings

from services.bootstrap import MODULES
from services.common.config import Settings
from services.common.inbound import commands_topic, results_topic
from services.common.topology import TOPIC_CONFIG, Topology
from tests.deploy.k8s_policy import Violation, check_all, image_problem, selector_matches

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
FIXTURES = Path(__file__).parent / "fixtures" / "k8s"
STRIMZI_SCHEMAS = Path(__file__).parent / "schemas" / "strimzi"

KUBERNETES_VERSION = "1.32.0"
"""The oldest Kubernetes the manifests support (deploy/k8s/README.md): validating against
it catches an API that is newer than what a bureau's cluster serves."""

KUSTOMIZATIONS = ("base", "overlays/dev", "overlays/prod")
OVERLAYS = ("overlays/dev", "overlays/prod")

PREFIX = "shuangjian"
TOPOLOGY = Topology(PREFIX, ("registry", "inspections", "finance"))
KAFKA_CLUSTER = "shuangjian"
IMAGE = "registry.example.gov.cn/shuangjian/shuangjian"
SERVICES = ("registry", "inspections", "finance")
COMPONENTS = (*SERVICES, "gateway", "projector")
PORTS = {"registry": 8001, "inspections": 8002, "finance": 8003, "gateway": 8000, "projector": 6066}

STRIMZI_CRDS = {
    "Kafka": "040-Crd-kafka.yaml",
    "KafkaTopic": "043-Crd-kafkatopic.yaml",
    "KafkaUser": "044-Crd-kafkauser.yaml",
    "KafkaNodePool": "045-Crd-kafkanodepool.yaml",
}

needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None,
    reason="kubectl (with its built-in kustomize) is not installed: cannot render deploy/k8s",
)

Obj = dict[str, Any]


# --- rendering -------------------------------------------------------------------------


def load_yaml_documents(text: str) -> list[Obj]:
    """Every non-empty document of a YAML stream (the C loader: the Kafka CRD is large)."""
    return [doc for doc in yaml.load_all(text, Loader=yaml.CSafeLoader) if doc]


@functools.cache
def _render(kustomization: str) -> tuple[Obj, ...]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S / kustomization)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {kustomization}:\n{result.stderr}"
    return tuple(load_yaml_documents(result.stdout))


def render(kustomization: str) -> list[Obj]:
    """The objects a kustomization renders, as fresh copies (tests may not share edits)."""
    return copy.deepcopy(list(_render(kustomization)))


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def config(objects: list[Obj]) -> dict[str, str]:
    """The platform's ConfigMap (its name carries kustomize's content hash)."""
    maps = [
        o
        for o in of_kind(objects, "ConfigMap")
        if o["metadata"]["name"].startswith("shuangjian-config")
    ]
    assert len(maps) == 1, [m["metadata"]["name"] for m in maps]
    data: dict[str, str] = maps[0]["data"]
    return data


def container(objects: list[Obj], component: str) -> Obj:
    deployment = one(objects, "Deployment", component)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    found: Obj = containers[0]
    return found


def env_of(c: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in c.get("env", [])}


# --- rendering and schemas -------------------------------------------------------------


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_renders(kustomization: str) -> None:
    objects = render(kustomization)
    assert objects
    for obj in objects:
        assert obj.get("apiVersion") and obj.get("kind") and obj["metadata"].get("name"), obj


def strict_crd_schema(node: Any, *, top: bool = True) -> Any:
    """A CRD's structural schema, closed as the API server closes it.

    CRD schemas rarely say ``additionalProperties: false``, yet the server prunes unknown
    fields (and ``kubectl apply --validate=strict`` refuses them): a misspelt field is
    silently dropped. Here every object of the structural schema (``properties``,
    ``items``, ``additionalProperties``) that does not keep unknown fields
    (``x-kubernetes-preserve-unknown-fields``) or hold an embedded resource refuses fields
    it does not name. Value validations (``allOf``, ``anyOf``, ``oneOf``, ``not``) are left
    as they are: there ``properties`` only restate fields of the structural part. The root
    ``metadata`` is the server's ObjectMeta and stays open (``test_custom_resources``
    checks it).
    """
    if not isinstance(node, dict):
        return node
    out = dict(node)
    if "properties" in node:
        out["properties"] = {
            key: (value if top and key == "metadata" else strict_crd_schema(value, top=False))
            for key, value in node["properties"].items()
        }
    if isinstance(node.get("items"), dict):
        out["items"] = strict_crd_schema(node["items"], top=False)
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = strict_crd_schema(node["additionalProperties"], top=False)
    keeps_unknown = node.get("x-kubernetes-preserve-unknown-fields") or node.get(
        "x-kubernetes-embedded-resource"
    )
    if node.get("type") == "object" and "additionalProperties" not in node and not keeps_unknown:
        out["additionalProperties"] = False
    return out


@dataclass(frozen=True)
class CrdVersion:
    """One served version of a vendored CRD, with its validator."""

    api_version: str
    validator: jsonschema.Draft202012Validator


@functools.cache
def strimzi_crd(kind: str) -> dict[str, CrdVersion]:
    """The served versions of a vendored Strimzi CRD, by apiVersion."""
    crd = yaml.load((STRIMZI_SCHEMAS / STRIMZI_CRDS[kind]).read_text(), Loader=yaml.CSafeLoader)
    assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["names"]["kind"] == kind
    group = crd["spec"]["group"]
    versions = {}
    for version in crd["spec"]["versions"]:
        if not version.get("served"):
            continue
        schema = strict_crd_schema(version["schema"]["openAPIV3Schema"])
        jsonschema.Draft202012Validator.check_schema(schema)
        api_version = f"{group}/{version['name']}"
        versions[api_version] = CrdVersion(api_version, jsonschema.Draft202012Validator(schema))
    return versions


def validate_custom_resource(obj: Obj) -> list[str]:
    """Errors of a Strimzi custom resource against its vendored CRD (empty: valid)."""
    versions = strimzi_crd(obj["kind"])
    if obj["apiVersion"] not in versions:
        return [f"apiVersion {obj['apiVersion']} is not served (served: {sorted(versions)})"]
    errors = [
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in versions[obj["apiVersion"]].validator.iter_errors(obj)
    ]
    meta = obj["metadata"]
    unknown = set(meta) - {"name", "namespace", "labels", "annotations"}
    if unknown:
        errors.append(f"metadata: unexpected fields {sorted(unknown)}")
    for key in ("labels", "annotations"):
        for name, value in (meta.get(key) or {}).items():
            if not isinstance(value, str):
                errors.append(f"metadata.{key}.{name}: {value!r} is not a string")
    return errors


def validate_builtin(obj: Obj) -> str | None:
    """The error of a built-in object against Kubernetes' schema, or ``None``."""
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        return f"{obj['kind']}/{obj['metadata']['name']}: {path}: {exc.message}"
    except kubernetes_validate.SchemaNotFoundError as exc:
        return f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}"
    return None


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_builtin_objects_match_the_kubernetes_schema(kustomization: str) -> None:
    builtin = [o for o in render(kustomization) if o["kind"] not in STRIMZI_CRDS]
    errors = [e for e in map(validate_builtin, builtin) if e]
    assert errors == []


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_custom_resources_match_the_vendored_crds(kustomization: str) -> None:
    """Strimzi's kinds against their CRDs. Any other kind is left to kubernetes-validate,
    which has no schema for a custom resource: adding one (a ServiceMonitor, say) fails
    there until its CRD is vendored and checked here."""
    objects = render(kustomization)
    errors = {
        f"{o['kind']}/{o['metadata']['name']}": validate_custom_resource(o)
        for o in objects
        if o["kind"] in STRIMZI_CRDS
    }
    assert {k: v for k, v in errors.items() if v} == {}
    assert {o["kind"] for o in objects} >= set(STRIMZI_CRDS)


def test_the_strict_crd_schema_refuses_an_unknown_field() -> None:
    """The closing of the CRD schemas works: a misspelt field is an error, as it would be
    on the server, and an open map (the topic's config) stays open."""
    spec: Obj = {"partitions": 6, "replicas": 3, "config": {"any.broker.setting": 1}}
    topic: Obj = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        "metadata": {"name": "t", "labels": {"strimzi.io/cluster": "c"}},
        "spec": spec,
    }
    assert validate_custom_resource(topic) == []
    spec["replica"] = 3
    assert validate_custom_resource(topic) == [
        "spec: Additional properties are not allowed ('replica' was unexpected)"
    ]
    spec.pop("replica")
    spec["partitions"] = "six"
    assert validate_custom_resource(topic) == ["spec.partitions: 'six' is not of type 'integer'"]
    spec["partitions"] = 6
    topic["apiVersion"] = "kafka.strimzi.io/v1beta2"
    assert validate_custom_resource(topic)[0].startswith("apiVersion kafka.strimzi.io/v1beta2")


# --- the policy ------------------------------------------------------------------------


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_policy_holds(kustomization: str) -> None:
    assert [str(v) for v in check_all(render(kustomization))] == []


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_no_secret_with_values_is_rendered(kustomization: str) -> None:
    secrets = of_kind(render(kustomization), "Secret")
    assert [s["metadata"]["name"] for s in secrets if s.get("data") or s.get("stringData")] == []


def load_fixture(name: str) -> list[Obj]:
    return load_yaml_documents((FIXTURES / name).read_text())


WEB = "Deployment/web"
BROKEN_FIXTURES: dict[str, list[Violation]] = {
    "missing-readiness-probe.yaml": [
        Violation(WEB, "web", "readiness-probe", "no readinessProbe"),
    ],
    "missing-liveness-probe.yaml": [
        Violation(WEB, "web", "liveness-probe", "no livenessProbe"),
    ],
    "missing-limits.yaml": [
        Violation(WEB, "web", "limits.cpu", "no limits.cpu"),
        Violation(WEB, "web", "limits.memory", "no limits.memory"),
    ],
    "missing-memory-request.yaml": [
        Violation(WEB, "web", "requests.memory", "no requests.memory"),
    ],
    "root-user.yaml": [
        Violation(WEB, "web", "run-as-non-root", "runAsUser is 0 (root)"),
    ],
    "non-root-not-enforced.yaml": [
        Violation(WEB, "web", "run-as-non-root", "runAsNonRoot is not true"),
    ],
    "writable-root-fs.yaml": [
        Violation(WEB, "web", "read-only-root-filesystem", "readOnlyRootFilesystem is not true"),
    ],
    "privilege-escalation.yaml": [
        Violation(
            WEB, "web", "allow-privilege-escalation", "allowPrivilegeEscalation is not false"
        ),
    ],
    "capabilities-kept.yaml": [
        Violation(WEB, "web", "capabilities", "capabilities.drop does not list ALL"),
    ],
    "seccomp-unconfined.yaml": [
        Violation(WEB, "web", "seccomp", "seccompProfile type is Unconfined, not RuntimeDefault"),
    ],
    "latest-image.yaml": [
        Violation(
            WEB, "web", "image-tag", "registry.example.gov.cn/demo/web:latest: the latest tag"
        ),
    ],
    "untagged-image.yaml": [
        Violation(
            WEB,
            "web",
            "image-tag",
            "registry.example.gov.cn:5000/demo/web: no tag (means latest)",
        ),
    ],
    "no-pdb.yaml": [
        Violation(WEB, None, "pdb", "no PodDisruptionBudget selects its pods"),
    ],
    "secret-with-data.yaml": [
        Violation(
            "Secret/shuangjian-secrets",
            None,
            "secret-values",
            "holds values: jwt-secret, mongodb-uri",
        ),
    ],
    "job-init-container-writable.yaml": [
        Violation(
            "Job/migrate", "wait", "read-only-root-filesystem", "readOnlyRootFilesystem is not true"
        ),
    ],
}


def test_policy_passes_the_good_fixture() -> None:
    assert check_all(load_fixture("good.yaml")) == []


@pytest.mark.parametrize("name", sorted(BROKEN_FIXTURES))
def test_policy_fails_each_broken_fixture_exactly(name: str) -> None:
    assert check_all(load_fixture(name)) == sorted(BROKEN_FIXTURES[name])


def test_every_fixture_is_checked() -> None:
    on_disk = {p.name for p in FIXTURES.glob("*.yaml")}
    assert on_disk == {"good.yaml", *BROKEN_FIXTURES}


@pytest.mark.parametrize("name", ["good.yaml", *sorted(BROKEN_FIXTURES)])
def test_fixtures_are_otherwise_valid_kubernetes(name: str) -> None:
    """Each fixture breaks the policy only: the schema accepts it."""
    assert [e for e in map(validate_builtin, load_fixture(name)) if e] == []


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("registry.example.gov.cn/shuangjian/shuangjian:0.1.0", None),
        ("registry.example.gov.cn:5000/shuangjian/shuangjian:0.1.0", None),
        ("mongo:8.0.17", None),
        ("mongo@sha256:" + "a" * 64, None),
        ("mongo", "mongo: no tag (means latest)"),
        ("localhost:5000/mongo", "localhost:5000/mongo: no tag (means latest)"),
        ("mongo:latest", "mongo:latest: the latest tag"),
        ("mongo@md5:abc", "mongo@md5:abc: not a sha256 digest"),
    ],
)
def test_image_references(image: str, problem: str | None) -> None:
    assert image_problem(image) == problem


# --- network policies ------------------------------------------------------------------


@dataclass(frozen=True)
class Pod:
    """A pod as NetworkPolicies see it: its labels and its namespace's."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    namespace_labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.namespace_labels:
            object.__setattr__(
                self, "namespace_labels", {"kubernetes.io/metadata.name": self.namespace}
            )


def _peer_matches(peer: Obj, pod: Pod, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        return False  # no pod of this model is addressed by IP
    namespaces = peer.get("namespaceSelector")
    if namespaces is None:
        in_namespace = pod.namespace == policy_namespace
    else:
        in_namespace = selector_matches(namespaces, pod.namespace_labels)
    pods = peer.get("podSelector")
    return in_namespace and (pods is None or selector_matches(pods, pod.labels))


def _port_matches(ports: list[Obj] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        assert isinstance(p["port"], int), "named ports: resolve them in this model first"
        if p["port"] <= port <= p.get("endPort", p["port"]):
            return True
    return False


def _namespace(obj: Obj) -> str:
    namespace: str = obj["metadata"].get("namespace", "default")
    return namespace


def _side_allows(
    policies: list[Obj], subject: Pod, direction: str, other: Pod, port: int, protocol: str
) -> bool:
    """Whether the policies selecting ``subject`` let traffic go (Egress) to, or come
    (Ingress) from, ``other``. A pod no policy of that direction selects is not isolated."""
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    selecting = [
        p
        for p in policies
        if _namespace(p) == subject.namespace
        and direction in p["spec"].get("policyTypes", ["Ingress"])
        and selector_matches(p["spec"]["podSelector"], subject.labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(_peer_matches(q, other, _namespace(policy)) for q in peers)
            if peer_ok and _port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def egress_allowed(policies: list[Obj], src: Pod, dst: Pod, port: int, proto: str = "TCP") -> bool:
    return _side_allows(policies, src, "Egress", dst, port, proto)


def allowed(policies: list[Obj], src: Pod, dst: Pod, port: int, proto: str = "TCP") -> bool:
    """Whether a connection from ``src`` to ``dst:port`` gets through both ends' policies."""
    return egress_allowed(policies, src, dst, port, proto) and _side_allows(
        policies, dst, "Ingress", src, port, proto
    )


def pods_of(objects: list[Obj]) -> dict[str, Pod]:
    """The pods of the rendered workloads (by workload name), Strimzi's pods as its
    operator labels them, and pods elsewhere that the policies name or must keep out."""
    namespace = _namespace(one(objects, "Deployment", "gateway"))
    pods = {
        o["metadata"]["name"]: Pod(
            o["metadata"]["name"], namespace, o["spec"]["template"]["metadata"]["labels"]
        )
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet", "Job")
    }
    strimzi = {"strimzi.io/cluster": KAFKA_CLUSTER, "strimzi.io/kind": "Kafka"}
    pods["kafka"] = Pod(
        "kafka",
        namespace,
        {
            **strimzi,
            "strimzi.io/name": f"{KAFKA_CLUSTER}-kafka",
            "strimzi.io/pool-name": "dual-role",
            "strimzi.io/broker-role": "true",
            "strimzi.io/controller-role": "true",
        },
    )
    pods["entity-operator"] = Pod(
        "entity-operator",
        namespace,
        {**strimzi, "strimzi.io/name": f"{KAFKA_CLUSTER}-entity-operator"},
    )
    pods["ingress-controller"] = Pod(
        "ingress-controller", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}
    )
    pods["dns"] = Pod("dns", "kube-system", {"k8s-app": "kube-dns"})
    pods["prometheus"] = Pod("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"})
    pods["intruder"] = Pod("intruder", namespace, {"app": "debug-shell"})
    pods["elsewhere"] = Pod("elsewhere", "default-other", {"app.kubernetes.io/name": "shuangjian"})
    return pods


def expected_flows() -> list[tuple[str, str, int, str]]:
    """The flows the platform needs (source, destination, port, protocol)."""
    flows = [("ingress-controller", "gateway", 8000, "TCP")]
    for caller in ("gateway", "projector"):
        flows += [(caller, s, PORTS[s], "TCP") for s in SERVICES]
    flows += [(c, "mongodb", 27017, "TCP") for c in COMPONENTS]
    flows += [("prometheus", c, PORTS[c], "TCP") for c in COMPONENTS]
    flows += [
        ("mongodb", "mongodb", 27017, "TCP"),
        ("mongodb-init", "mongodb", 27017, "TCP"),
        ("entity-operator", "kafka", 9091, "TCP"),
        ("kafka", "kafka", 9090, "TCP"),
        ("kafka", "kafka", 9091, "TCP"),
    ]
    return flows


FORBIDDEN_FLOWS = [
    ("ingress-controller", "registry", 8001),
    ("ingress-controller", "projector", 6066),
    ("ingress-controller", "mongodb", 27017),
    ("registry", "inspections", 8002),
    ("finance", "registry", 8001),
    ("registry", "gateway", 8000),
    ("gateway", "projector", 6066),
    ("gateway", "mongodb", 27018),
    ("mongodb", "registry", 8001),
    ("intruder", "mongodb", 27017),
    ("intruder", "registry", 8001),
    ("intruder", "gateway", 8000),
    ("elsewhere", "gateway", 8000),
    ("elsewhere", "mongodb", 27017),
    ("gateway", "ingress-controller", 80),
    ("prometheus", "mongodb", 27017),
    # Only the default deny keeps an unlisted pod of the namespace from going out.
    ("intruder", "elsewhere", 443),
]


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_network_policies_deny_by_default(kustomization: str) -> None:
    policies = of_kind(render(kustomization), "NetworkPolicy")
    deny_all = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and sorted(p["spec"].get("policyTypes", [])) == ["Egress", "Ingress"]
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert len(deny_all) == 1


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_only_the_gateway_takes_traffic_from_the_ingress_controller(kustomization: str) -> None:
    objects = render(kustomization)
    policies = of_kind(objects, "NetworkPolicy")
    pods = pods_of(objects)
    controller = pods["ingress-controller"]
    ours = {name: pod for name, pod in pods.items() if pod.namespace == pods["gateway"].namespace}
    selected: set[str] = set()
    for policy in policies:
        admits_controller = any(
            not rule.get("from")
            or any(_peer_matches(peer, controller, _namespace(policy)) for peer in rule["from"])
            for rule in policy["spec"].get("ingress") or []
        )
        if admits_controller:
            selected |= {
                name
                for name, pod in ours.items()
                if selector_matches(policy["spec"]["podSelector"], pod.labels)
            }
    assert selected == {"gateway"}


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_network_policies_allow_exactly_the_needed_flows(kustomization: str) -> None:
    objects = render(kustomization)
    policies = of_kind(objects, "NetworkPolicy")
    pods = pods_of(objects)
    blocked = [f for f in expected_flows() if not allowed(policies, pods[f[0]], pods[f[1]], *f[2:])]
    assert blocked == []
    let_through = [f for f in FORBIDDEN_FLOWS if allowed(policies, pods[f[0]], pods[f[1]], f[2])]
    assert let_through == []
    # DNS for every pod of the namespace, and nothing else on port 53.
    for name, pod in pods.items():
        if pod.namespace == pods["gateway"].namespace and name != "intruder":
            for proto in ("UDP", "TCP"):
                assert egress_allowed(policies, pod, pods["dns"], 53, proto), (name, proto)
            assert not egress_allowed(policies, pod, pods["prometheus"], 53, "UDP"), name


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_process_reaches_the_kafka_listener(kustomization: str) -> None:
    """Our side lets each process out to the brokers' TLS listener; Strimzi's side (the
    policy it makes from ``networkPolicyPeers``) lets them in, and only them."""
    objects = render(kustomization)
    policies = of_kind(objects, "NetworkPolicy")
    pods = pods_of(objects)
    for component in COMPONENTS:
        assert egress_allowed(policies, pods[component], pods["kafka"], 9093), component
    assert not egress_allowed(policies, pods["mongodb"], pods["kafka"], 9093)
    listener = kafka_listener(objects)
    peers = listener["networkPolicyPeers"]
    for name, pod in pods.items():
        admitted = any(_peer_matches(p, pod, _namespace(pod_owner(objects))) for p in peers)
        assert admitted == (name in COMPONENTS), name


def pod_owner(objects: list[Obj]) -> Obj:
    return one(objects, "Kafka", KAFKA_CLUSTER)


def kafka_listener(objects: list[Obj]) -> Obj:
    listeners = [
        item for item in pod_owner(objects)["spec"]["kafka"]["listeners"] if item["port"] == 9093
    ]
    assert len(listeners) == 1
    found: Obj = listeners[0]
    return found


# --- the platform's contract -----------------------------------------------------------


def acl_set(user: Obj) -> set[tuple[str, str | None, str]]:
    """A KafkaUser's allow ACLs as (resource type, name, operation); literal names only."""
    found = set()
    for acl in user["spec"]["authorization"]["acls"]:
        assert acl.get("type", "allow") == "allow"
        resource = acl["resource"]
        assert resource.get("patternType", "literal") == "literal"
        for operation in acl["operations"]:
            found.add((resource["type"], resource.get("name"), operation))
    return found


def expected_acls(topology: Topology) -> dict[str, set[tuple[str, str | None, str]]]:
    """Least privilege per process, from the platform's topology."""
    reads = {
        ("topic", topic, operation)
        for topic in topology.event_topics
        for operation in ("Read", "Describe")
    }
    users = {
        f"{PREFIX}-{service}": {
            ("topic", topology.events(service), "Write"),
            ("topic", topology.events(service), "Describe"),
            ("cluster", None, "IdempotentWrite"),
            # District systems' commands over Kafka (services/common/inbound.py).
            ("topic", commands_topic(topology.prefix, service), "Read"),
            ("topic", commands_topic(topology.prefix, service), "Describe"),
            ("group", f"{topology.prefix}-{service}-commands", "Read"),
            ("topic", results_topic(topology.prefix, service), "Write"),
            ("topic", results_topic(topology.prefix, service), "Describe"),
            ("topic", topology.dead_letters, "Write"),
            ("topic", topology.dead_letters, "Describe"),
        }
        for service in topology.services
    }
    users[f"{PREFIX}-projector"] = reads | {
        ("group", topology.group, "Read"),
        ("topic", topology.dead_letters, "Write"),
        ("topic", topology.dead_letters, "Describe"),
    }
    users[f"{PREFIX}-gateway"] = set(reads)
    return users


def test_the_topology_is_the_platforms() -> None:
    """The services named here are the ones the platform runs."""
    assert tuple(m.name for m in MODULES) == TOPOLOGY.services
    assert {m.name: m.port for m in MODULES} == {s: PORTS[s] for s in SERVICES}


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_kafka_topics_are_the_platforms(kustomization: str) -> None:
    objects = render(kustomization)
    topics = of_kind(objects, "KafkaTopic")
    names = sorted(t["spec"].get("topicName", t["metadata"]["name"]) for t in topics)
    inbound = [
        name(PREFIX, service)
        for service in TOPOLOGY.services
        for name in (commands_topic, results_topic)
    ]
    assert names == sorted([*TOPOLOGY.event_topics, TOPOLOGY.dead_letters, *inbound])
    settings = config(objects)
    assert settings["SHUANGJIAN_KAFKA_TOPIC_PREFIX"] == TOPOLOGY.prefix
    for topic in topics:
        spec = topic["spec"]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == KAFKA_CLUSTER
        assert spec["partitions"] == int(settings["SHUANGJIAN_KAFKA_PARTITIONS"])
        assert spec["replicas"] == int(settings["SHUANGJIAN_KAFKA_REPLICATION"])
        if spec["topicName"].endswith(".command-results"):
            # Answers are read within days; the inbound consumer makes them so too.
            assert int(spec["config"]["retention.ms"]) > 0
        else:
            # As the platform would make them itself (kafka_create_topics): nothing ages out.
            assert {k: str(spec["config"].get(k)) for k in TOPIC_CONFIG} == TOPIC_CONFIG
        min_isr = int(spec["config"]["min.insync.replicas"])
        # One replica may be down and writes with acks=all go on (unless there is one).
        assert min_isr == max(spec["replicas"] - 1, 1)


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_kafka_users_have_least_privilege(kustomization: str) -> None:
    objects = render(kustomization)
    users = {u["metadata"]["name"]: u for u in of_kind(objects, "KafkaUser")}
    assert {name: acl_set(user) for name, user in users.items()} == expected_acls(TOPOLOGY)
    groups = {name for kind, name, _ in acl_set(users[f"{PREFIX}-projector"]) if kind == "group"}
    assert groups == {TOPOLOGY.group}
    for user in users.values():
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        assert user["spec"]["authorization"]["type"] == "simple"
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == KAFKA_CLUSTER


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_kafka_cluster_matches_the_clients_settings(kustomization: str) -> None:
    objects = render(kustomization)
    kafka = one(objects, "Kafka", KAFKA_CLUSTER)
    settings = config(objects)
    assert settings["SHUANGJIAN_KAFKA_BOOTSTRAP"] == f"{KAFKA_CLUSTER}-kafka-bootstrap:9093"
    assert settings["SHUANGJIAN_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert settings["SHUANGJIAN_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert settings["SHUANGJIAN_KAFKA_CREATE_TOPICS"] == "false"
    listener = kafka_listener(objects)
    assert listener["tls"] is True and listener["type"] == "internal"
    assert listener["authentication"]["type"] == "scram-sha-512"
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    assert kafka["spec"]["kafka"]["version"].startswith("4.")
    assert set(kafka["spec"]["entityOperator"]) >= {"topicOperator", "userOperator"}
    pools = of_kind(objects, "KafkaNodePool")
    assert all(p["metadata"]["labels"]["strimzi.io/cluster"] == KAFKA_CLUSTER for p in pools)
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    controllers = sum(p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"])
    assert controllers % 2 == 1, "a KRaft quorum needs an odd number of controllers"
    cluster_config = kafka["spec"]["kafka"]["config"]
    replication = int(settings["SHUANGJIAN_KAFKA_REPLICATION"])
    assert replication <= brokers
    assert cluster_config["default.replication.factor"] == replication
    assert cluster_config["offsets.topic.replication.factor"] == replication
    assert cluster_config["transaction.state.log.replication.factor"] == replication
    assert cluster_config["min.insync.replicas"] == max(replication - 1, 1)
    assert cluster_config["auto.create.topics.enable"] is False


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_projector_never_outnumbers_the_partitions(kustomization: str) -> None:
    objects = render(kustomization)
    partitions = int(config(objects)["SHUANGJIAN_KAFKA_PARTITIONS"])
    topic_partitions = {
        t["spec"]["partitions"]
        for t in of_kind(objects, "KafkaTopic")
        if t["spec"]["topicName"] in TOPOLOGY.event_topics
    }
    autoscalers = [
        h
        for h in of_kind(objects, "HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"]["name"] == "projector"
    ]
    if autoscalers:
        (hpa,) = autoscalers
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        most = hpa["spec"]["maxReplicas"]
        assert hpa["spec"]["minReplicas"] <= most
    else:
        most = one(objects, "Deployment", "projector")["spec"]["replicas"]
    assert most <= partitions
    assert all(most <= p for p in topic_partitions)
    assert topic_partitions == {partitions}


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_processes_run_as_the_contract_says(kustomization: str) -> None:
    """Command, port, probes, writable paths, Kafka user and secrets of each process."""
    objects = render(kustomization)
    settings = config(objects)
    users = {u["metadata"]["name"] for u in of_kind(objects, "KafkaUser")}
    expected_args = {
        **{s: ["serve", s, "--host", "0.0.0.0", "--port", str(PORTS[s])] for s in SERVICES},
        "gateway": ["gateway", "--host", "0.0.0.0", "--port", "8000"],
        "projector": ["project"],
    }
    for component in COMPONENTS:
        c = container(objects, component)
        assert c["command"] == ["shuangjian"], component
        assert c["args"] == expected_args[component], component
        assert [p["containerPort"] for p in c["ports"]] == [PORTS[component]], component
        ready = "/ready" if component == "projector" else "/readyz"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", component
        assert c["readinessProbe"]["httpGet"]["path"] == ready, component
        assert c["livenessProbe"] != c["readinessProbe"], component
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if probe in c:
                assert c[probe]["httpGet"]["port"] in ("http", PORTS[component]), component
        env = env_of(c)
        username = env["SHUANGJIAN_KAFKA_SASL_USERNAME"]["value"]
        assert username == f"{PREFIX}-{component}" and username in users, component
        password = env["SHUANGJIAN_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert password == {"name": username, "key": "password"}, component
        for name, key in (
            ("SHUANGJIAN_MONGODB_URI", "mongodb-uri"),
            ("SHUANGJIAN_JWT_SECRET", "jwt-secret"),
        ):
            ref = env[name]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "shuangjian-secrets", "key": key}, (component, name)
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert {settings["SHUANGJIAN_DATA_DIR"], "/tmp"} <= set(mounts), component
        cafile = Path(settings["SHUANGJIAN_KAFKA_SSL_CAFILE"])
        volumes = {
            v["name"]: v
            for v in one(objects, "Deployment", component)["spec"]["template"]["spec"]["volumes"]
        }
        for path in (settings["SHUANGJIAN_DATA_DIR"], "/tmp"):
            assert "emptyDir" in volumes[mounts[path]], (component, path)
        ca = volumes[mounts[str(cafile.parent)]]["secret"]
        assert ca["secretName"] == f"{KAFKA_CLUSTER}-cluster-ca-cert", component
        assert ca["items"] == [{"key": "ca.crt", "path": cafile.name}], component
    projector = container(objects, "projector")
    assert projector["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert env_of(projector)["SHUANGJIAN_PROJECTOR_WEB_PORT"]["value"] == "6066"
    payer = env_of(container(objects, "finance"))["SHUANGJIAN_FINANCE_PAYER_SECRET"]
    assert payer["valueFrom"]["secretKeyRef"]["name"] == "shuangjian-secrets"
    for component in ("registry", "inspections", "gateway", "projector"):
        assert "SHUANGJIAN_FINANCE_PAYER_SECRET" not in env_of(container(objects, component))
    assert settings["SHUANGJIAN_REGISTRY_URL"] == "http://registry:8001"
    assert settings["SHUANGJIAN_INSPECTIONS_URL"] == "http://inspections:8002"
    assert settings["SHUANGJIAN_FINANCE_URL"] == "http://finance:8003"


def known_settings() -> set[str]:
    """Every SHUANGJIAN_* variable some process of the platform reads."""
    classes: list[type[BaseSettings]] = [Settings, *(m.settings for m in MODULES)]
    return {f"SHUANGJIAN_{name.upper()}" for cls in classes for name in cls.model_fields}


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_variable_set_is_a_setting(kustomization: str) -> None:
    """A misspelt variable is ignored by pydantic-settings (extra="ignore"): catch it here."""
    objects = render(kustomization)
    names = {n for n in config(objects) if n.startswith("SHUANGJIAN_")}
    for component in COMPONENTS:
        names |= {n for n in env_of(container(objects, component)) if n.startswith("SHUANGJIAN_")}
    assert names - known_settings() == set()


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_app_image_is_tagged_per_release(kustomization: str) -> None:
    objects = render(kustomization)
    images = {container(objects, c)["image"] for c in COMPONENTS}
    assert len(images) == 1
    (image,) = images
    name, tag = image.rsplit(":", 1)
    assert name == IMAGE and tag != "latest" and image_problem(image) is None


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_mongodb_is_a_replica_set_the_init_job_forms(kustomization: str) -> None:
    objects = render(kustomization)
    mongo = one(objects, "StatefulSet", "mongodb")
    job = one(objects, "Job", "mongodb-init")
    members = int(
        env_of(job["spec"]["template"]["spec"]["containers"][0])["MONGODB_MEMBERS"]["value"]
    )
    assert members == mongo["spec"]["replicas"]
    args = mongo["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--replSet") + 1] == "rs0"
    assert "--keyFile" in args
    version = mongo["spec"]["template"]["spec"]["containers"][0]["image"].rsplit(":", 1)[1]
    assert tuple(int(x) for x in version.split(".")[:2]) >= (6, 0)
    service = one(objects, "Service", mongo["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"


def _spreads(pod_spec: Obj, key: str) -> bool:
    return any(c["topologyKey"] == key for c in pod_spec.get("topologySpreadConstraints", []))


def _anti_affine_by_node(pod_spec: Obj) -> bool:
    rules = (
        pod_spec.get("affinity", {})
        .get("podAntiAffinity", {})
        .get("requiredDuringSchedulingIgnoredDuringExecution", [])
    )
    return any(r["topologyKey"] == "kubernetes.io/hostname" for r in rules)


@needs_kubectl
def test_dev_is_one_of_everything() -> None:
    objects = render("overlays/dev")
    for deployment in of_kind(objects, "Deployment"):
        assert deployment["spec"]["replicas"] == 1, deployment["metadata"]["name"]
    assert of_kind(objects, "HorizontalPodAutoscaler") == []
    (pool,) = of_kind(objects, "KafkaNodePool")
    assert pool["spec"]["replicas"] == 1
    assert config(objects)["SHUANGJIAN_KAFKA_REPLICATION"] == "1"
    assert one(objects, "StatefulSet", "mongodb")["spec"]["replicas"] == 1


@needs_kubectl
def test_prod_is_spread_and_redundant() -> None:
    objects = render("overlays/prod")
    autoscaled = {
        h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(objects, "HorizontalPodAutoscaler")
    }
    for component in COMPONENTS:
        deployment = one(objects, "Deployment", component)
        least = (
            autoscaled[component]["spec"]["minReplicas"]
            if component in autoscaled
            else deployment["spec"]["replicas"]
        )
        assert least >= 3, component
        pod_spec = deployment["spec"]["template"]["spec"]
        assert _spreads(pod_spec, "topology.kubernetes.io/zone"), component
        assert _spreads(pod_spec, "kubernetes.io/hostname"), component
    assert "replicas" not in one(objects, "Deployment", "gateway")["spec"], "the HPA owns it"
    assert autoscaled["gateway"]["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    (pool,) = of_kind(objects, "KafkaNodePool")
    assert pool["spec"]["replicas"] >= 3
    assert _anti_affine_by_node(pool["spec"]["template"]["pod"])
    mongo = one(objects, "StatefulSet", "mongodb")
    assert mongo["spec"]["replicas"] == 3
    assert _anti_affine_by_node(mongo["spec"]["template"]["spec"])
    base = {c: container(render("base"), c)["resources"]["limits"] for c in COMPONENTS}
    for component in COMPONENTS:
        limits = container(objects, component)["resources"]["limits"]
        assert limits != base[component], component


@needs_kubectl
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_ingress_exposes_the_gateway_only(kustomization: str) -> None:
    objects = render(kustomization)
    (ingress,) = of_kind(objects, "Ingress")
    backends = {
        (path["path"], path["backend"]["service"]["name"])
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends == {("/graphql", "gateway"), ("/static", "gateway")}
    annotations = ingress["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@needs_kubectl
@pytest.mark.parametrize("kustomization", OVERLAYS)
def test_everything_lands_in_the_overlays_namespace(kustomization: str) -> None:
    objects = render(kustomization)
    (namespace,) = of_kind(objects, "Namespace")
    name = namespace["metadata"]["name"]
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == name, obj["metadata"]["name"]
    # No object hard-codes another namespace inside it (service URLs stay relative).
    texts = [v for obj in objects for v in _walk(obj) if isinstance(v, str)]
    assert not [t for t in texts if ".svc.cluster.local" in t]


def test_the_rebuild_job_is_valid_safe_and_runs_as_the_projector_with_the_overlays_image() -> None:
    """``deploy/k8s/jobs/rebuild``: the one-off ``shuangjian rebuild`` (README)."""
    objects = render("jobs/rebuild")
    assert [obj["kind"] for obj in objects] == ["Job"]
    (job,) = objects
    assert validate_builtin(job) is None
    assert check_all(objects) == []
    pod = job["spec"]["template"]
    # The platform's egress to Kafka and MongoDB selects app.kubernetes.io/name.
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "shuangjian"
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["rebuild"]
    env = {e["name"]: e for e in container["env"]}
    assert env["SHUANGJIAN_KAFKA_SASL_USERNAME"]["value"] == f"{PREFIX}-projector"
    tags = {
        c["image"]
        for overlay in OVERLAYS
        for obj in render(overlay)
        if obj["kind"] == "Deployment"
        for c in obj["spec"]["template"]["spec"]["containers"]
        if c["image"].startswith(IMAGE)
    }
    assert container["image"] in tags

"""The deployment policy every rendered Kubernetes manifest of the platform must meet.

Schemas say whether a manifest is well formed; they cannot say that a container runs as
root, has no readiness probe or pulls ``:latest``. These rules do, offline, on the objects
``kubectl kustomize`` renders (``tests/deploy/test_k8s.py``), and each one is shown to
fire on a deliberately broken fixture (``tests/deploy/fixtures/k8s/``).

The rules (each a ``Violation.rule``):

* ``liveness-probe``, ``readiness-probe``: every long-running container has both.
  Init containers and the containers of Jobs (and CronJobs) end by design and are exempt,
  except native sidecars (init containers with ``restartPolicy: Always``).
* ``requests.cpu``, ``requests.memory``, ``limits.cpu``, ``limits.memory``: every
  container, init containers included, says what it needs and what it may take.
* ``run-as-non-root``, ``read-only-root-filesystem``, ``allow-privilege-escalation``,
  ``capabilities``, ``seccomp``: the Pod Security Standard "restricted", plus a read-only
  root filesystem; pod-level settings count where the container does not override them.
* ``image-tag``: an explicit tag that is not ``latest``, or a digest: what runs is what
  was reviewed, and a rollback goes back to a known image.
* ``secret-values``: no Secret carries values: secrets are made outside the repository.
* ``pdb``: every Deployment and StatefulSet is covered by a PodDisruptionBudget, so that a
  node drain never takes all of a component's pods at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

WORKLOAD_KINDS = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}
)
"""Kinds whose pods this policy checks."""

RUN_TO_COMPLETION = frozenset({"Job", "CronJob"})
"""Kinds whose containers end by design: no probes required."""

NEEDS_DISRUPTION_BUDGET = frozenset({"Deployment", "StatefulSet"})

RESOURCE_KEYS = ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory")

Object = Mapping[str, Any]


@dataclass(frozen=True, order=True)
class Violation:
    """One broken rule: where (``Kind/name``, and the container if it is about one), which
    rule and what exactly is wrong."""

    obj: str
    container: str | None
    rule: str
    detail: str

    def __str__(self) -> str:
        where = self.obj if self.container is None else f"{self.obj} container {self.container}"
        return f"{where}: {self.rule}: {self.detail}"


def object_id(obj: Object) -> str:
    """``Kind/name`` (``Kind/namespace/name`` when namespaced), for messages."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    name = meta.get("name", "?")
    return f"{obj.get('kind')}/{namespace}/{name}" if namespace else f"{obj.get('kind')}/{name}"


def pod_template(obj: Object) -> Mapping[str, Any] | None:
    """The pod template of a workload (``spec.template``), or ``None`` for other kinds."""
    kind = obj.get("kind")
    if kind not in WORKLOAD_KINDS:
        return None
    spec = obj.get("spec") or {}
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    template: Mapping[str, Any] | None = spec.get("template")
    return template


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a Kubernetes label selector (``matchLabels`` and ``matchExpressions``)
    selects ``labels``. An empty selector selects everything, as in a NetworkPolicy's
    ``podSelector``; a missing one (``None``) selects nothing."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def image_problem(image: str) -> str | None:
    """What is wrong with an image reference, or ``None``: it must carry a digest, or a tag
    that is not ``latest``. The tag is after the last ``:`` of the last path segment (a
    registry's ``host:port`` is not a tag)."""
    if "@" in image:
        digest = image.split("@", 1)[1]
        return None if digest.startswith("sha256:") else f"{image}: not a sha256 digest"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"{image}: no tag (means latest)"
    tag = last.rsplit(":", 1)[1]
    if tag == "latest":
        return f"{image}: the latest tag"
    return None


def _containers(pod_spec: Mapping[str, Any]) -> Iterator[tuple[Mapping[str, Any], bool]]:
    """Every container with whether it is an init container."""
    for container in pod_spec.get("initContainers") or []:
        yield container, True
    for container in pod_spec.get("containers") or []:
        yield container, False


def _effective(
    pod_context: Mapping[str, Any], container_context: Mapping[str, Any], key: str
) -> Any:
    """A security setting as it applies to a container: its own, else the pod's."""
    if key in container_context:
        return container_context[key]
    return pod_context.get(key)


def check_container(
    obj_id: str,
    container: Mapping[str, Any],
    pod_spec: Mapping[str, Any],
    *,
    needs_probes: bool,
) -> list[Violation]:
    """The container rules for one container of a pod."""
    name = container.get("name", "?")
    found: list[Violation] = []

    def broken(rule: str, detail: str) -> None:
        found.append(Violation(obj_id, name, rule, detail))

    if needs_probes:
        for probe, rule in (
            ("livenessProbe", "liveness-probe"),
            ("readinessProbe", "readiness-probe"),
        ):
            if not container.get(probe):
                broken(rule, f"no {probe}")

    resources = container.get("resources") or {}
    for key in RESOURCE_KEYS:
        section, resource = key.split(".")
        if not (resources.get(section) or {}).get(resource):
            broken(key, f"no {key}")

    pod_context = pod_spec.get("securityContext") or {}
    context = container.get("securityContext") or {}
    if _effective(pod_context, context, "runAsUser") == 0:
        broken("run-as-non-root", "runAsUser is 0 (root)")
    elif _effective(pod_context, context, "runAsNonRoot") is not True:
        broken("run-as-non-root", "runAsNonRoot is not true")
    if context.get("readOnlyRootFilesystem") is not True:
        broken("read-only-root-filesystem", "readOnlyRootFilesystem is not true")
    if context.get("allowPrivilegeEscalation") is not False:
        broken("allow-privilege-escalation", "allowPrivilegeEscalation is not false")
    dropped = (context.get("capabilities") or {}).get("drop") or []
    if "ALL" not in dropped:
        broken("capabilities", "capabilities.drop does not list ALL")
    seccomp = _effective(pod_context, context, "seccompProfile") or {}
    if seccomp.get("type") != "RuntimeDefault":
        broken("seccomp", f"seccompProfile type is {seccomp.get('type')}, not RuntimeDefault")

    image = container.get("image")
    problem = image_problem(image) if image else "no image"
    if problem:
        broken("image-tag", problem)
    return found


def check_object(obj: Object) -> list[Violation]:
    """The rules that one object meets or breaks on its own (all but ``pdb``)."""
    obj_id = object_id(obj)
    if obj.get("kind") == "Secret":
        keys = sorted({*(obj.get("data") or {}), *(obj.get("stringData") or {})})
        if keys:
            return [Violation(obj_id, None, "secret-values", f"holds values: {', '.join(keys)}")]
        return []
    template = pod_template(obj)
    if template is None:
        return []
    pod_spec = template.get("spec") or {}
    long_running = obj.get("kind") not in RUN_TO_COMPLETION
    found: list[Violation] = []
    for container, is_init in _containers(pod_spec):
        sidecar = is_init and container.get("restartPolicy") == "Always"
        needs_probes = long_running and (not is_init or sidecar)
        found += check_container(obj_id, container, pod_spec, needs_probes=needs_probes)
    return found


def uncovered_by_disruption_budget(objects: Iterable[Object]) -> list[Violation]:
    """Deployments and StatefulSets no PodDisruptionBudget of their namespace selects."""
    objects = list(objects)
    budgets = [o for o in objects if o.get("kind") == "PodDisruptionBudget"]
    found: list[Violation] = []
    for obj in objects:
        if obj.get("kind") not in NEEDS_DISRUPTION_BUDGET:
            continue
        namespace = (obj.get("metadata") or {}).get("namespace")
        template = pod_template(obj) or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        covered = any(
            (b.get("metadata") or {}).get("namespace") == namespace
            and selector_matches((b.get("spec") or {}).get("selector"), labels)
            for b in budgets
        )
        if not covered:
            found.append(
                Violation(object_id(obj), None, "pdb", "no PodDisruptionBudget selects its pods")
            )
    return found


def check_all(objects: Iterable[Object]) -> list[Violation]:
    """Every violation in a set of objects (one rendered overlay), sorted."""
    objects = list(objects)
    found = [v for obj in objects for v in check_object(obj)]
    found += uncovered_by_disruption_budget(objects)
    return sorted(found)

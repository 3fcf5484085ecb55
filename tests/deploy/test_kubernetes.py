"""The Kubernetes manifests: every overlay renders, validates against the Kubernetes API
schemas (built-in kinds, `kubernetes-validate`) and the vendored CRD schemas (custom
resources, `jsonschema`), and keeps the promises docs/production.md makes: secrets by
reference, hardened pods, rollouts and drains that drop no call, autoscaling on calls,
only the webhook exposed."""

from __future__ import annotations

import copy
import functools
import ipaddress
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.conftest import (
    DRAIN_MARGIN_S,
    K8S,
    OVERLAYS,
    SECRET_VARS,
    SERVICES,
    component,
    containers,
    env_value,
    is_switchboard_image,
    named,
    of_kind,
    prestop_sleep_s,
    render,
    service_deployments,
)

kubernetes_validate = pytest.importorskip("kubernetes_validate")
from kubernetes_validate import utils as _kv_utils  # noqa: E402

# The oldest and the newest Kubernetes minor the manifests are meant for. kubernetes-validate
# bundles schemas from 1.25 on; 1.30 is the oldest minor still commonly supported by the
# cloud providers, 1.33 a current one.
KUBERNETES_VERSIONS = ("1.30.0", "1.33.0")

# kubernetes-validate re-reads its (large) JSON schemas on every call; cache them.
_kv_utils.schema_contents = functools.lru_cache(maxsize=None)(_kv_utils.schema_contents)

CRDS = Path(__file__).parent / "crds"
NATS_VALUES = K8S / "nats" / "values.yaml"
WEBHOOK_PATH = "/api/voice/realtime-webhook"
NAMESPACE = "switchboard"
NAMESPACED_KINDS_EXEMPT = {"Namespace", "CustomResourceDefinition", "ClusterRole"}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def objects(overlay: str) -> list[dict[str, Any]]:
    return render(f"overlays/{overlay}")


# What each overlay is for (docs/production.md, "Layout"): the kinds of objects it adds to
# the base and the replicas it runs (None: the count is KEDA's, not the manifest's).
OVERLAY_PURPOSE: dict[str, tuple[set[str], dict[str, int | None]]] = {
    # + KEDA ScaledObject, ServiceMonitors, webhook Ingress, agent profiles
    "production": (
        {"ScaledObject", "ServiceMonitor", "Ingress", "ConfigMap"},
        {
            "switchboard-ingress": 3,
            "switchboard-acceptor": 2,
            "switchboard-session": None,
            "switchboard-dialler": 2,
            "switchboard-postcall": 2,
        },
    ),
    # + the simulator; 1 ingress, 1 acceptor, 2 workers; no KEDA nor Prometheus Operator
    "local": (
        {"Deployment", "Service", "NetworkPolicy", "ConfigMap"},
        {
            "switchboard-ingress": 1,
            "switchboard-acceptor": 1,
            "switchboard-dialler": 1,
            "switchboard-session": 2,
            "switchboard-postcall": 1,
            "switchboard-simulator": 1,
        },
    ),
}


def test_each_overlay_adds_what_it_is_for(overlay: str, objects: list[dict[str, Any]]) -> None:
    # Every overlay is described (and so every described one is tested by each parametrized
    # test here): one that vanished or appeared unannounced fails.
    assert set(OVERLAYS) == set(OVERLAY_PURPOSE), OVERLAYS
    kinds, replicas = OVERLAY_PURPOSE[overlay]
    base = {(o["kind"], o["metadata"]["name"]) for o in render("base")}
    added = {o["kind"] for o in objects if (o["kind"], o["metadata"]["name"]) not in base}
    assert added == kinds, f"{overlay} adds {added}, not {kinds}"
    running = {
        o["metadata"]["name"]: o["spec"].get("replicas") for o in of_kind(objects, "Deployment")
    }
    assert running == replicas


def test_base_renders() -> None:
    kinds = {o["kind"] for o in render("base")}
    assert {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"} <= kinds


def test_everything_lands_in_the_switchboard_namespace(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        if obj["kind"] not in NAMESPACED_KINDS_EXEMPT:
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]


# ------------------------------------------------------------------------------ schemas


def _builtin(obj: dict[str, Any]) -> bool:
    group = obj["apiVersion"].rsplit("/", 1)[0] if "/" in obj["apiVersion"] else ""
    return group == "" or group.endswith(".k8s.io") or "." not in group


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_builtin_objects_validate(objects: list[dict[str, Any]], version: str) -> None:
    builtin = [o for o in objects if _builtin(o)]
    assert builtin
    for obj in builtin:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            pytest.fail(f"{where} is invalid for Kubernetes {version}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            pytest.fail(f"{where}: {error.message}")


def _close(schema: Any) -> Any:
    """Unknown fields become errors, as `kubectl apply` (strict field validation) makes
    them, except where the CRD preserves unknown fields."""
    if isinstance(schema, dict):
        schema = {k: _close(v) for k, v in schema.items()}
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_close(v) for v in schema]
    return schema


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        spec = crd["spec"]
        for version in spec["versions"]:
            key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
            schemas[key] = _close(version["schema"]["openAPIV3Schema"])
    return schemas


def test_vendored_crds_are_valid_crds() -> None:
    paths = sorted(CRDS.glob("*.yaml"))
    assert paths, "no vendored CRD schemas"
    for path in paths:
        crd = yaml.safe_load(path.read_text())
        kubernetes_validate.validate(crd, KUBERNETES_VERSIONS[-1], strict=True)
        for version in crd["spec"]["versions"]:
            jsonschema.Draft7Validator.check_schema(version["schema"]["openAPIV3Schema"])


def test_custom_resources_validate_against_their_crds(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        if _builtin(obj):
            continue
        key = (obj["apiVersion"], obj["kind"])
        schema = crd_schemas().get(key)
        assert schema is not None, (
            f"{obj['kind']}/{obj['metadata']['name']}: no CRD schema for {key} in "
            f"tests/deploy/crds (vendor one, see its README)"
        )
        errors = sorted(
            jsonschema.Draft7Validator(schema).iter_errors(obj), key=lambda e: list(e.path)
        )
        assert not errors, "\n".join(
            f"{obj['kind']}/{obj['metadata']['name']}: "
            f"{'.'.join(str(p) for p in e.path)}: {e.message}"
            for e in errors
        )


def test_crd_check_catches_a_typo() -> None:
    """The CRD check is not vacuous: a misspelt field fails it."""
    scaled = named(render("overlays/production"), "ScaledObject", "switchboard-session")
    broken = copy.deepcopy(scaled)
    broken["spec"]["minReplicas"] = broken["spec"].pop("minReplicaCount")
    schema = crd_schemas()[("keda.sh/v1alpha1", "ScaledObject")]
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


# ------------------------------------------------------------------------------ secrets


def test_no_secret_is_rendered(objects: list[dict[str, Any]]) -> None:
    assert not of_kind(objects, "Secret"), "Secrets are created out of band, never rendered"
    for config_map in of_kind(objects, "ConfigMap"):
        leaked = set(config_map.get("data", {})) & set(SECRET_VARS)
        assert not leaked, f"ConfigMap {config_map['metadata']['name']} holds {leaked}"


def test_secrets_are_referenced_from_the_secret(objects: list[dict[str, Any]]) -> None:
    example = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    for obj in of_kind(objects, "Deployment"):
        for container in containers(obj["spec"]["template"]["spec"]):
            for var in container.get("env", []):
                text = str(var.get("value", ""))
                assert not text.startswith(("sk-", "whsec_")), f"{var['name']} is inlined"
                if var["name"] in SECRET_VARS:
                    ref = var.get("valueFrom", {}).get("secretKeyRef")
                    assert ref, f"{obj['metadata']['name']}: {var['name']} not from a Secret"
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    # The Secret the docs tell operators to create has exactly these keys.
                    assert ref["name"] == example["metadata"]["name"]
                    assert ref["key"] in example["stringData"], ref


def test_secret_example_is_valid_and_in_no_kustomization() -> None:
    example = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    kubernetes_validate.validate(example, KUBERNETES_VERSIONS[-1], strict=True)
    assert set(example["stringData"]) == set(SECRET_VARS)
    for kustomization in K8S.rglob("kustomization.yaml"):
        entries = yaml.safe_load(kustomization.read_text())
        assert "secret.example" not in yaml.safe_dump(entries), kustomization  # not comments


def test_each_service_gets_only_the_secrets_it_needs(objects: list[dict[str, Any]]) -> None:
    wanted = {
        "ingress": {"OPENAI_WEBHOOK_SECRET", "SWITCHBOARD_CONTROL_TOKEN", "SWITCHBOARD_VIEW_TOKEN"},
        "acceptor": {"OPENAI_API_KEY"},
        "session": {"OPENAI_API_KEY"},
        "dialler": {"OPENAI_API_KEY", "TRUNK_PASSWORD"},
        "postcall": set(),  # endpoint secrets live in NATS (KV), not in the environment
    }
    for name, deployment in service_deployments(objects).items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        got = {v["name"] for v in container.get("env", []) if v["name"] in SECRET_VARS}
        assert got == wanted[name], f"{name}: {sorted(got)}"


# ----------------------------------------------------------------------------- workloads


def test_pods_are_hardened(objects: list[dict[str, Any]]) -> None:
    for deployment in of_kind(objects, "Deployment"):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        assert pod.get("automountServiceAccountToken") is False, name
        pod_security = pod.get("securityContext", {})
        assert pod_security.get("runAsNonRoot") is True, name
        assert pod_security.get("runAsUser", 0) != 0, name
        assert pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        for container in containers(pod):
            security = container.get("securityContext", {})
            assert security.get("readOnlyRootFilesystem") is True, name
            assert security.get("allowPrivilegeEscalation") is False, name
            assert security.get("capabilities", {}).get("drop") == ["ALL"], name
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), name
            assert "memory" in resources.get("limits", {}), name
            # Read-only root: Python and libraries still need a writable /tmp.
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, name


def test_probes_use_the_service_health_endpoints(objects: list[dict[str, Any]]) -> None:
    for deployment in service_deployments(objects).values():
        name = deployment["metadata"]["name"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        expected = {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}
        for probe, path in expected.items():
            http_get = container[probe]["httpGet"]
            assert http_get["path"] == path, f"{name} {probe}"
            port = http_get["port"]
            assert port in ports or port in ports.values(), f"{name} {probe} port {port}"


def test_probe_ports_match_the_cli_ports(objects: list[dict[str, Any]]) -> None:
    """The port a container declares is the one its command line makes it listen on."""
    flag = {"ingress": "--port", "acceptor": "--metrics-port", "session": "--metrics-port",
            "dialler": "--metrics-port", "postcall": "--metrics-port"}  # fmt: skip
    for name, deployment in service_deployments(objects).items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        args = [str(a) for a in container["args"]]
        assert args[0] == name
        listen = int(args[args.index(flag[name]) + 1])
        assert [p["containerPort"] for p in container["ports"]] == [listen], name


def test_rollouts_never_lower_capacity(objects: list[dict[str, Any]]) -> None:
    for deployment in service_deployments(objects).values():
        strategy = deployment["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0, deployment["metadata"]
        assert strategy["rollingUpdate"]["maxSurge"] not in (0, "0%")


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    match = selector.get("matchLabels", selector)
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def test_every_service_has_a_disruption_budget(objects: list[dict[str, Any]]) -> None:
    budgets = of_kind(objects, "PodDisruptionBudget")
    for name, deployment in service_deployments(objects).items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        mine = [b for b in budgets if _selects(b["spec"]["selector"], labels)]
        assert len(mine) == 1, f"{name}: {len(mine)} PodDisruptionBudgets"
        spec = mine[0]["spec"]
        # maxUnavailable ≥ 1 never blocks a node drain forever (minAvailable can).
        assert spec.get("maxUnavailable", 0) >= 1 and "minAvailable" not in spec, spec


def test_session_drain_fits_in_the_grace_period(objects: list[dict[str, Any]]) -> None:
    """SIGTERM comes after the preStop hook, and the kubelet kills the pod at the end of
    the grace period: the drain deadline (and a margin to exit) must fit in between, or a
    rollout cuts the calls that are being handed off."""
    from shared.settings import Settings

    default = float(Settings.model_fields["session_drain_deadline_s"].default)
    deployment = service_deployments(objects)["session"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    configured = env_value(objects, container, "SESSION_DRAIN_DEADLINE_S")
    deadline = float(configured) if configured is not None else default
    grace = pod["terminationGracePeriodSeconds"]
    pre_stop = prestop_sleep_s(container)
    assert pre_stop > 0, "a preStop pause lets endpoints and load balancers catch up"
    assert deadline + DRAIN_MARGIN_S <= grace - pre_stop, (
        f"drain deadline {deadline}s + {DRAIN_MARGIN_S}s margin must fit in "
        f"terminationGracePeriodSeconds {grace}s - preStop {pre_stop}s"
    )


def test_other_services_stop_within_their_grace_period(objects: list[dict[str, Any]]) -> None:
    for deployment in of_kind(objects, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            assert prestop_sleep_s(container) > 0, deployment["metadata"]["name"]
            assert prestop_sleep_s(container) + DRAIN_MARGIN_S < pod.get(
                "terminationGracePeriodSeconds", 30
            )


def test_services_select_pods_and_named_ports(objects: list[dict[str, Any]]) -> None:
    pods = [d["spec"]["template"] for d in of_kind(objects, "Deployment")]
    for service in of_kind(objects, "Service"):
        name = service["metadata"]["name"]
        targets = [
            p for p in pods if _selects(service["spec"]["selector"], p["metadata"]["labels"])
        ]
        assert targets, f"Service {name} selects no pod"
        for target in targets:
            declared = {
                p.get("name"): p["containerPort"]
                for c in target["spec"]["containers"]
                for p in c.get("ports", [])
            }
            for port in service["spec"]["ports"]:
                target_port = port.get("targetPort", port["port"])
                assert target_port in declared or target_port in declared.values(), (
                    f"Service {name} port {port} has no matching container port {declared}"
                )


def test_one_image_for_every_service(objects: list[dict[str, Any]], overlay: str) -> None:
    images = set()
    for deployment in of_kind(objects, "Deployment"):
        for container in containers(deployment["spec"]["template"]["spec"]):
            assert is_switchboard_image(container["image"]), container["image"]
            images.add(container["image"])
    assert len(images) == 1, images
    (image,) = images
    if overlay == "production":
        tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert tag and tag != "latest", f"production pins a release tag, got {image!r}"


def test_workers_have_stable_names(objects: list[dict[str, Any]]) -> None:
    (container,) = service_deployments(objects)["session"]["spec"]["template"]["spec"]["containers"]
    worker_id = {v["name"]: v for v in container["env"]}["WORKER_ID"]
    assert worker_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


# ------------------------------------------------------------------------------ network


def _peer_is_external(peer: dict[str, Any]) -> bool:
    """A peer outside this namespace's own pods."""
    return "namespaceSelector" in peer or "ipBlock" in peer


def test_network_is_deny_by_default(objects: list[dict[str, Any]]) -> None:
    policies = of_kind(objects, "NetworkPolicy")
    default_deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert default_deny, "no default-deny NetworkPolicy"


def _selected_components(policy: dict[str, Any], objects: list[dict[str, Any]]) -> set[str]:
    selector = policy["spec"]["podSelector"]
    chosen = set()
    for deployment in of_kind(objects, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        ok = all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
        for expression in selector.get("matchExpressions", []):
            assert expression["operator"] == "In"
            ok = ok and labels.get(expression["key"]) in expression["values"]
        if ok:
            chosen.add(labels["app.kubernetes.io/component"])
    return chosen


def test_only_the_webhook_port_is_open_to_the_outside(objects: list[dict[str, Any]]) -> None:
    """From outside the namespace, a pod can reach: the ingress pods' port 8080, and the
    metrics ports from the monitoring namespace. Nothing else."""
    metric_ports = {8080, 9101, 9102, 9103, 9104}
    for policy in of_kind(objects, "NetworkPolicy"):
        chosen = _selected_components(policy, objects)
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from", [])
            ports = {p["port"] for p in rule.get("ports", [])}
            assert ports, f"{policy['metadata']['name']}: a rule with no port opens all ports"
            if not any(_peer_is_external(p) for p in peers):
                continue
            from_monitoring = all(
                p.get("namespaceSelector", {})
                .get("matchLabels", {})
                .get("kubernetes.io/metadata.name")
                == "monitoring"
                for p in peers
            )
            if from_monitoring:
                assert ports <= metric_ports, policy["metadata"]["name"]
            else:
                assert chosen == {"ingress"} and ports == {8080}, (
                    f"{policy['metadata']['name']} opens {chosen} {ports} to the outside"
                )


def test_only_acceptor_session_dialler_and_postcall_reach_the_internet(
    objects: list[dict[str, Any]],
) -> None:
    """OpenAI for the acceptor, the workers and the dialler; subscribers' webhook URLs for
    postcall."""
    for policy in of_kind(objects, "NetworkPolicy"):
        for rule in policy["spec"].get("egress", []):
            for peer in rule.get("to", []):
                block = peer.get("ipBlock")
                if block and ipaddress.ip_network(block["cidr"]).num_addresses > 2**24:
                    components = _selected_components(policy, objects)
                    assert components <= {"acceptor", "session", "dialler", "postcall"}
                    assert {p["port"] for p in rule["ports"]} == {443}


# -------------------------------------------------------------------------- production


@pytest.fixture
def production() -> list[dict[str, Any]]:
    return render("overlays/production")


def test_session_workers_autoscale_on_the_work_queue(production: list[dict[str, Any]]) -> None:
    (scaled,) = of_kind(production, "ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    session = service_deployments(production)["session"]
    assert target["name"] == session["metadata"]["name"]
    assert target.get("kind", "Deployment") == "Deployment"
    # The autoscaler owns the count: a replicas field would fight it on every apply.
    assert "replicas" not in session["spec"]
    assert scaled["spec"]["minReplicaCount"] >= 2, "never scale to zero: no slot, no call"
    assert scaled["spec"]["maxReplicaCount"] > scaled["spec"]["minReplicaCount"]

    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "nats-jetstream"
    meta = trigger["metadata"]
    from shared import streams

    assert meta["stream"] == streams.SESSIONS_STREAM
    assert meta["consumer"] == streams.SESSION_CONSUMER
    assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata values are strings"

    (container,) = session["spec"]["template"]["spec"]["containers"]
    capacity = int(env_value(production, container, "SESSION_CAPACITY") or 0)
    assert capacity > 0
    assert 0 < int(meta["lagThreshold"]) < capacity, (
        "lagThreshold is calls per worker; at SESSION_CAPACITY new workers come too late"
    )


def test_keda_and_services_find_the_same_nats(production: list[dict[str, Any]]) -> None:
    (scaled,) = of_kind(production, "ScaledObject")
    endpoint = scaled["spec"]["triggers"][0]["metadata"]["natsServerMonitoringEndpoint"]
    host, port = endpoint.rsplit(":", 1)
    values = yaml.safe_load(NATS_VALUES.read_text())
    assert int(port) == values["config"]["monitor"]["port"]
    (container,) = service_deployments(production)["session"]["spec"]["template"]["spec"][
        "containers"
    ]
    nats_url = env_value(production, container, "NATS_URL")
    assert nats_url
    nats_host = nats_url.split("://", 1)[1].split(",")[0].rsplit(":", 1)[0]
    release, namespace = nats_host.split(".")[:2]
    assert host == f"{release}-headless.{namespace}.svc.cluster.local", (host, nats_host)


def test_streams_are_replicated_on_the_nats_cluster(production: list[dict[str, Any]]) -> None:
    values = yaml.safe_load(NATS_VALUES.read_text())
    cluster = values["config"]["cluster"]
    assert cluster["enabled"] is True and cluster["replicas"] == 3
    for deployment in service_deployments(production).values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert env_value(production, container, "NATS_REPLICAS") == "3"


def test_nats_values_describe_a_persistent_monitored_cluster() -> None:
    values = yaml.safe_load(NATS_VALUES.read_text())
    jetstream = values["config"]["jetstream"]
    assert jetstream["enabled"] is True
    assert jetstream["fileStore"]["enabled"] is True
    assert jetstream["fileStore"]["pvc"]["enabled"] is True
    assert values["config"]["monitor"]["enabled"] is True
    assert values["promExporter"]["enabled"] is True
    assert values["podDisruptionBudget"]["enabled"] is True
    major, minor = (int(x) for x in values["container"]["image"]["tag"].split(".")[:2])
    assert (major, minor) >= (2, 12), "per-message TTL and scheduled messages need 2.12"
    local = yaml.safe_load((K8S / "nats" / "values-local.yaml").read_text())
    assert local["config"]["cluster"]["enabled"] is False


def test_local_overlay_matches_a_single_nats_node() -> None:
    objects = render("overlays/local")
    for deployment in service_deployments(objects).values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert env_value(objects, container, "NATS_REPLICAS") == "1"
        # The simulator stands in for OpenAI.
        base_url = env_value(objects, container, "OPENAI_BASE_URL") or ""
        simulator = named(objects, "Service", "switchboard-simulator")
        port = simulator["spec"]["ports"][0]["port"]
        assert base_url == f"http://switchboard-simulator:{port}/v1"


def test_every_service_is_scraped(production: list[dict[str, Any]]) -> None:
    monitors = of_kind(production, "ServiceMonitor")
    services = of_kind(production, "Service")
    scraped = set()
    for monitor in monitors:
        chosen = [
            s
            for s in services
            if _selects(monitor["spec"]["selector"], s["metadata"].get("labels", {}))
        ]
        assert len(chosen) == 1, monitor["metadata"]["name"]
        port_names = {p["name"] for p in chosen[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in port_names, (monitor["metadata"]["name"], port_names)
            assert endpoint.get("path", "/metrics") == "/metrics"
        scraped.add(component(chosen[0]))
    assert scraped == set(SERVICES)


def test_only_the_webhook_path_is_routed_from_outside(production: list[dict[str, Any]]) -> None:
    (ingress,) = of_kind(production, "Ingress")
    paths = [path for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]]
    assert [(p["path"], p["pathType"]) for p in paths] == [(WEBHOOK_PATH, "Exact")]
    backend = paths[0]["backend"]["service"]
    service = named(production, "Service", backend["name"])
    assert component(service) == "ingress"
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    assert ingress["spec"].get("tls"), "OpenAI sends webhooks to https:// URLs"


def test_agents_file_is_mounted_and_valid(production: list[dict[str, Any]], tmp_path: Path) -> None:
    (container,) = service_deployments(production)["acceptor"]["spec"]["template"]["spec"][
        "containers"
    ]
    path = env_value(production, container, "SWITCHBOARD_AGENTS_FILE")
    assert path
    mount = next(
        m for m in container["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")
    )
    pod = service_deployments(production)["acceptor"]["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    config_map = named(production, "ConfigMap", volume["configMap"]["name"])
    text = config_map["data"][Path(path).name]
    assert yaml.safe_load(text)["agents"]
    # The acceptor's own loader, which refuses a bad file at start-up.
    agents_file = pytest.importorskip("shared.agents_file")
    from shared.agents import default_agent
    from shared.settings import Settings

    copy_ = tmp_path / "agents.yaml"
    copy_.write_text(text)
    assert agents_file.load_agents_file(copy_, default_agent(Settings()))

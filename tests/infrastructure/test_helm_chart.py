"""infrastructure/helm/mysoulmate with the real tools: Helm's own engine (helm-python-sdk binds
libhelm_c, Helm v4's Go code) lints and renders the chart; kubernetes-validate checks every
rendered document strictly against the Kubernetes 1.29-1.32 schemas; checkov scans the
rendered manifests; and the seed's numbers (replicas, autoscaling thresholds, probes,
security contexts, rolling updates) are read back from the rendered output.

checkov lives in a venv of its own (`make checkov`: it pins boto3 against the layer's pin);
its checks may fail only as listed, with reasons, in infrastructure/helm/checkov-skips.yaml.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.support.helpers import require_service

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "infrastructure" / "helm" / "mysoulmate"
MONITORING = ROOT / "infrastructure" / "monitoring"
CHECKOV = ROOT / ".venv" / "tools" / "checkov" / "bin" / "checkov"
CHECKOV_SKIPS = ROOT / "infrastructure" / "helm" / "checkov-skips.yaml"
KUBE_VERSIONS = ("1.29.0", "1.30.0", "1.31.0", "1.32.0")
RELEASE, NAMESPACE = "demo", "mysoulmate"
# Custom resources: kubernetes-validate ships schemas of the built-in kinds only.
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
}
DIGEST = "sha256:" + "0123456789abcdef" * 4
SQS_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/mysoulmate-events"
ROLE_ARN = "arn:aws:iam::123456789012:role/mysoulmate"

CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "sqs": {
        "config": {"queueBackend": "sqs", "eventsQueueUrl": SQS_URL},
        "worker": {"enabled": False},
        "serviceAccount": {"roleArn": ROLE_ARN},
    },
    "no-ingress-no-autoscaling": {
        "ingress": {"enabled": False},
        "api": {"autoscaling": {"enabled": False}},
        "worker": {"autoscaling": {"enabled": False}},
    },
    "everything-on": {
        "image": {"digest": DIGEST},
        "commonLabels": {"team": "platform"},
        "commonAnnotations": {"owner": "platform@example.com"},
        "global": {"imagePullSecrets": ["registry-credentials"]},
        "serviceAccount": {"roleArn": ROLE_ARN},
        "config": {
            "extraEnv": {"TRACK_API_REQUESTS": "true"},
            "jwksUrl": "https://id.example/jwks",
        },
        "worker": {"autoscaling": {"enabled": False}, "keda": {"enabled": True}},
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "prometheusRule": {"enabled": True},
            "grafanaDashboard": {"enabled": True},
        },
        "networkPolicy": {
            "egress": {
                "database": {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]},
                "https": {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]},
            }
        },
        "nodeSelector": {"kubernetes.io/arch": "amd64"},
        "priorityClassName": "high",
        "reports": {"enabled": True, "existingClaim": "mysoulmate-reports", "locale": "fr"},
    },
    "reports-to-s3": {
        "reports": {"enabled": True, "bucket": "mysoulmate-reports", "timeZone": "Europe/Paris"},
        "serviceAccount": {"roleArn": ROLE_ARN},
        "config": {"mediaOriginalsBucket": "mysoulmate-media", "mediaRequireSigned": True},
    },
}

Doc = dict[str, Any]


def render(values: dict[str, Any]) -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE)


def documents(rendered: dict[str, str]) -> list[Doc]:
    docs: list[Doc] = []
    for name, text in sorted(rendered.items()):
        if not name.endswith(".txt"):
            docs += [doc for doc in yaml.safe_load_all(text) if doc]
    return docs


@pytest.fixture(scope="module")
def manifests() -> dict[str, list[Doc]]:
    return {case: documents(render(values)) for case, values in CASES.items()}


def find(docs: list[Doc], kind: str, suffix: str = "") -> Doc:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    assert len(matches) == 1, f"{kind} *{suffix}: {[d['metadata']['name'] for d in matches]}"
    return matches[0]


def kinds(docs: list[Doc]) -> set[str]:
    return {d["kind"] for d in docs}


def pod_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    for doc in docs:
        if doc["kind"] == "Pod":
            yield doc["metadata"]["name"], doc["spec"]
        elif doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


# ---- helm lint, the schema, impossible values -------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_chart_lints_strictly(case: str) -> None:
    report = helm.lint(str(CHART), CASES[case], strict=True)
    assert report["errors"] == []
    # Severity 2 is a warning, 3 an error; `icon is recommended` (1, info) is all there is.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"api": {"replicas": 3}}, "additional properties 'replicas' not allowed"),
        ({"ingress": {"paths": [{"path": "/metrics", "pathType": "Prefix"}]}}, "paths/0/path"),
        ({"ingress": {"paths": [{"path": "/", "pathType": "Prefix"}]}}, "paths/0/path"),
        ({"podSecurityContext": {"runAsUser": 0}}, "runAsUser"),
        ({"config": {"extraEnv": {"JWT_SECRET": "x" * 40}}}, "JWT_SECRET"),
        ({"config": {"queueBackend": "kafka"}}, "queueBackend"),
        ({"api": {"autoscaling": {"targetCPUUtilizationPercentage": 170}}}, "targetCPU"),
        ({"image": {"digest": "latest"}}, "digest"),
    ],
    ids=[
        "unknown-key",
        "metrics-path",
        "root-path",
        "root-uid",
        "secret-in-values",
        "queue",
        "cpu",
        "digest",
    ],
)
def test_schema_forbidden_values_fail_helm_lint(values: dict[str, Any], complaint: str) -> None:
    errors = helm.lint(str(CHART), values, strict=True)["errors"]
    assert errors, f"helm lint accepted {values}"
    assert complaint in "\n".join(errors)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"api": {"autoscaling": {"minReplicas": 6, "maxReplicas": 4}}},
            "api.autoscaling.minReplicas (6) is greater than api.autoscaling.maxReplicas (4)",
        ),
        (
            {"config": {"queueBackend": "local"}, "worker": {"enabled": False}},
            "config.queueBackend=local is a SQLite file of one process",
        ),
        (
            {
                "config": {"queueBackend": "local"},
                "worker": {"enabled": False},
                "api": {"autoscaling": {"enabled": False}, "replicaCount": 2},
            },
            "config.queueBackend=local is a SQLite file of one process",
        ),
        (
            {"config": {"queueBackend": "sqs", "eventsQueueUrl": SQS_URL}},
            "needs config.queueBackend=rabbitmq",
        ),
        (
            {"config": {"queueBackend": "sqs"}, "worker": {"enabled": False}},
            "needs config.eventsQueueUrl",
        ),
        ({"worker": {"keda": {"enabled": True}}}, "KEDA creates its own HPA"),
        (
            {"api": {"preStopSleepSeconds": 60}},
            "must be shorter than api.terminationGracePeriodSeconds",
        ),
    ],
    ids=[
        "min-over-max",
        "local-autoscaled",
        "local-replicas",
        "worker-on-sqs",
        "sqs-url",
        "keda-and-hpa",
        "prestop",
    ],
)
def test_impossible_values_stop_the_install_with_a_clear_message(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmRenderError) as failure:
        render(values)
    assert "VALUES VALIDATION" in str(failure.value)
    assert message in str(failure.value)


def test_a_single_pod_on_the_local_queue_is_possible() -> None:
    local = {
        "config": {"queueBackend": "local"},
        "worker": {"enabled": False},
        "api": {"autoscaling": {"enabled": False}, "replicaCount": 1},
    }
    docs = documents(render(local))
    assert find(docs, "Deployment", "-api")["spec"]["replicas"] == 1
    assert "mysoulmate-worker" not in json.dumps([d["metadata"]["name"] for d in docs])


def test_notes_say_how_to_reach_the_service() -> None:
    assert "https://api.mysoulmate.local/api-docs" in render({})["mysoulmate/templates/NOTES.txt"]
    notes = render(CASES["no-ingress-no-autoscaling"])["mysoulmate/templates/NOTES.txt"]
    assert f"kubectl -n {NAMESPACE} port-forward svc/{RELEASE}-mysoulmate-api 8080:80" in notes


# ---- every document, strictly, against 1.29-1.32 -----------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_rendered_document_validates_strictly(
    manifests: dict[str, list[Doc]], case: str
) -> None:
    problems = []
    for doc in manifests[case]:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            # No schema of the CRD offline: its metadata still validates as any object's.
            doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc["metadata"]}
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                problems.append(f"{where} @ {version}: {exc.message} at {list(exc.path)}")
    assert not problems, "\n".join(problems)


def test_strict_validation_refuses_an_unknown_field(manifests: dict[str, list[Doc]]) -> None:
    deployment = copy.deepcopy(find(manifests["defaults"], "Deployment", "-api"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)


def test_only_known_custom_resources_are_rendered(manifests: dict[str, list[Doc]]) -> None:
    custom = {
        (d["apiVersion"], d["kind"])
        for docs in manifests.values()
        for d in docs
        if "." in d["apiVersion"].split("/")[0]
        and not d["apiVersion"].endswith(("k8s.io/v1", "k8s.io/v2"))
    }
    assert custom == CUSTOM_KINDS


# ---- the seed's numbers ------------------------------------------------------------------------


def test_api_deployment_rolls_without_losing_capacity(manifests: dict[str, list[Doc]]) -> None:
    api = find(manifests["defaults"], "Deployment", "-api")
    assert api["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    # With the HPA on it owns the count (an upgrade must not reset it to the chart's).
    assert "replicas" not in api["spec"]
    off = find(manifests["no-ingress-no-autoscaling"], "Deployment", "-api")
    assert off["spec"]["replicas"] == 3
    assert (
        find(manifests["no-ingress-no-autoscaling"], "Deployment", "-worker")["spec"]["replicas"]
        == 2
    )


def test_api_autoscales_3_to_10_at_70_cpu_and_80_memory(manifests: dict[str, list[Doc]]) -> None:
    hpa = find(manifests["defaults"], "HorizontalPodAutoscaler", "-api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"{RELEASE}-mysoulmate-api",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["spec"]["metrics"]}
    assert targets == {
        "cpu": {"type": "Utilization", "averageUtilization": 70},
        "memory": {"type": "Utilization", "averageUtilization": 80},
    }
    worker = find(manifests["defaults"], "HorizontalPodAutoscaler", "-worker")
    assert [m["resource"]["name"] for m in worker["spec"]["metrics"]] == ["cpu"]
    assert "HorizontalPodAutoscaler" not in kinds(manifests["no-ingress-no-autoscaling"])


def test_api_probes_and_graceful_stop(manifests: dict[str, list[Doc]]) -> None:
    spec = find(manifests["defaults"], "Deployment", "-api")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["args"][:1] == ["serve"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    assert 0 < int(sleep[1]) < spec["terminationGracePeriodSeconds"]
    assert spec["terminationGracePeriodSeconds"] - int(sleep[1]) >= 30  # time to drain


def test_worker_runs_the_consumer(manifests: dict[str, list[Doc]]) -> None:
    spec = find(manifests["defaults"], "Deployment", "-worker")["spec"]["template"]["spec"]
    assert spec["containers"][0]["args"] == ["worker"]
    assert spec["terminationGracePeriodSeconds"] >= 30
    assert not any(d["metadata"]["name"].endswith("-worker") for d in manifests["sqs"])


def test_keda_scales_the_worker_on_queue_depth(manifests: dict[str, list[Doc]]) -> None:
    docs = manifests["everything-on"]
    scaled = find(docs, "ScaledObject", "-worker")
    assert scaled["spec"]["scaleTargetRef"] == {"name": f"{RELEASE}-mysoulmate-worker"}
    rabbit = next(t for t in scaled["spec"]["triggers"] if t["type"] == "rabbitmq")
    assert rabbit["metadata"]["queueName"] == "mysoulmate-events"
    auth = find(docs, "TriggerAuthentication", "-worker")
    assert auth["spec"]["secretTargetRef"][0]["key"] == "RABBITMQ_URL"
    assert not any(
        d["kind"] == "HorizontalPodAutoscaler" and "worker" in d["metadata"]["name"] for d in docs
    )
    assert "replicas" not in find(docs, "Deployment", "-worker")["spec"]


@pytest.mark.parametrize("component", ["api", "worker"])
def test_disruption_budgets_and_spread(manifests: dict[str, list[Doc]], component: str) -> None:
    docs = manifests["defaults"]
    pdb = find(docs, "PodDisruptionBudget", f"-{component}")
    assert pdb["spec"]["maxUnavailable"] == 1
    template = find(docs, "Deployment", f"-{component}")["spec"]["template"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    spread = template["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    for constraint in spread:
        assert (
            constraint["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
        )


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_pod_and_container_is_hardened(manifests: dict[str, list[Doc]], case: str) -> None:
    specs = dict(pod_specs(manifests[case]))
    assert specs, case
    for name, spec in specs.items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] == 10001, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        mounts: dict[str, str] = {}
        for container in spec["containers"] + spec.get("initContainers", []):
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["privileged"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
            resources = container["resources"]
            for bound in ("requests", "limits"):
                assert set(resources[bound]) == {"cpu", "memory"}, f"{name}: {bound}"
            mounts.update({m["mountPath"]: m["name"] for m in container["volumeMounts"]})
        # The read-only root file system's writable paths are emptyDirs.
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "/tmp" in mounts, name
        for path, volume in mounts.items():
            assert "emptyDir" in volumes[volume], f"{name}: {path}"
        if not name.endswith("-test"):
            assert mounts.get("/data") == "data", name


def test_image_is_pinned_by_digest_when_given(manifests: dict[str, list[Doc]]) -> None:
    for docs, expected, policy in (
        (manifests["defaults"], "ghcr.io/mysoulmate/mysoulmate:0.1.0", "Always"),
        (manifests["everything-on"], f"ghcr.io/mysoulmate/mysoulmate@{DIGEST}", "IfNotPresent"),
    ):
        for name, spec in pod_specs(docs):
            assert spec["containers"][0]["image"] == expected, name
            assert spec["containers"][0]["imagePullPolicy"] == policy, name


# ---- settings, secrets, migrations ------------------------------------------------------------


def test_settings_in_a_configmap_and_secrets_only_by_reference(
    manifests: dict[str, list[Doc]],
) -> None:
    docs = manifests["defaults"]
    assert "Secret" not in kinds(docs)
    settings = find(docs, "ConfigMap", "mysoulmate")["data"]
    assert settings["STORAGE_BACKEND"] == "postgres"
    assert settings["QUEUE_BACKEND"] == "rabbitmq"
    assert settings["RATE_LIMIT_STORE"] == "redis"
    assert settings["DATA_DIR"] == "/data"
    secret_like = re.compile(r"(SECRET|TOKEN|PASSWORD|DSN|_URL)$")
    assert not [k for k in settings if secret_like.search(k) and k not in ("JWKS_URL",)]
    for name, spec in pod_specs(docs):
        if name.endswith("-test"):
            continue  # the `helm test` pod needs no settings
        refs = [e for e in spec["containers"][0]["envFrom"] if "secretRef" in e]
        assert refs == [{"secretRef": {"name": f"{RELEASE}-mysoulmate-secrets"}}], name
    existing = documents(render({"secrets": {"existingSecret": "prod-credentials"}}))
    api = find(existing, "Deployment", "-api")["spec"]["template"]["spec"]["containers"][0]
    assert {"secretRef": {"name": "prod-credentials"}} in api["envFrom"]


def test_a_settings_change_rolls_the_pods() -> None:
    def checksums(values: dict[str, Any]) -> set[str]:
        docs = documents(render(values))
        return {
            find(docs, "Deployment", f"-{c}")["spec"]["template"]["metadata"]["annotations"][
                "checksum/config"
            ]
            for c in ("api", "worker")
        }

    before, same, after = checksums({}), checksums({}), checksums({"config": {"logLevel": "DEBUG"}})
    assert len(before) == 1
    assert before == same
    assert before != after


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook(
    manifests: dict[str, list[Doc]],
) -> None:
    docs = manifests["defaults"]
    job = find(docs, "Job", "-migrations")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["migrate"]
    # It runs before the ConfigMap exists: the same settings, inline.
    inline = {e["name"]: e["value"] for e in container["env"]}
    assert inline == find(docs, "ConfigMap", "mysoulmate")["data"]
    dynamodb = documents(render({"config": {"storageBackend": "dynamodb"}}))
    assert "Job" not in kinds(dynamodb)


def test_service_account_carries_the_irsa_role(manifests: dict[str, list[Doc]]) -> None:
    account = find(manifests["sqs"], "ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == ROLE_ARN
    assert account["automountServiceAccountToken"] is False
    settings = find(manifests["sqs"], "ConfigMap", "mysoulmate")["data"]
    assert (settings["QUEUE_BACKEND"], settings["EVENTS_QUEUE_URL"]) == ("sqs", SQS_URL)


# ---- ingress and network policies ----------------------------------------------------------------


def routed(paths: list[Doc], url_path: str) -> bool:
    for rule in paths:
        prefix = rule["path"]
        if rule["pathType"] == "Exact" and url_path == prefix:
            return True
        if rule["pathType"] == "Prefix" and (
            url_path == prefix or url_path.startswith(prefix.rstrip("/") + "/")
        ):
            return True
    return False


def test_ingress_routes_every_endpoint_group_with_tls_and_never_metrics(
    manifests: dict[str, list[Doc]],
) -> None:
    ingress = find(manifests["defaults"], "Ingress")
    assert (
        ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    )
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [
        {"hosts": ["api.mysoulmate.local"], "secretName": f"{RELEASE}-mysoulmate-tls"}
    ]
    paths = ingress["spec"]["rules"][0]["http"]["paths"]
    api_paths = json.loads((ROOT / "docs" / "openapi.json").read_text())["paths"]
    public = [p for p in api_paths if p != "/metrics"]
    public += ["/api-docs", "/api-docs.json", "/api-docs/redoc"]  # the docs pages
    assert [p for p in public if not routed(paths, re.sub(r"\{[^}]+\}", "x", p))] == []
    assert not routed(paths, "/metrics")
    assert "Ingress" not in kinds(manifests["no-ingress-no-autoscaling"])


def test_network_policies_allow_only_what_is_needed(manifests: dict[str, list[Doc]]) -> None:
    docs = manifests["defaults"]
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    release = policies[f"{RELEASE}-mysoulmate"]
    assert release["policyTypes"] == ["Ingress", "Egress"]
    assert release["ingress"] == []
    egress_ports = sorted({p["port"] for rule in release["egress"] for p in rule["ports"]}, key=str)
    assert egress_ports == sorted({53, "http", 5432, 5672, 5671, 6379, 443}, key=str)
    api = policies[f"{RELEASE}-mysoulmate-api"]
    sources = api["ingress"][0]["from"]
    assert {"kubernetes.io/metadata.name": "ingress-nginx"} in [
        s.get("namespaceSelector", {}).get("matchLabels") for s in sources
    ]
    assert {"kubernetes.io/metadata.name": "monitoring"} in [
        s.get("namespaceSelector", {}).get("matchLabels") for s in sources
    ]
    # SQS: no broker port; a restricted database peer where one is given.
    sqs = find(manifests["sqs"], "NetworkPolicy", "mysoulmate")["spec"]
    assert 5672 not in {p["port"] for rule in sqs["egress"] for p in rule["ports"]}
    on = find(manifests["everything-on"], "NetworkPolicy", "mysoulmate")["spec"]
    database = next(r for r in on["egress"] if r["ports"][0]["port"] == 5432)
    assert database["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]


# ---- monitoring from one source ----------------------------------------------------------------


def test_rules_and_dashboard_come_from_infrastructure_monitoring(
    manifests: dict[str, list[Doc]],
) -> None:
    for name in ("prometheus-rules.yaml", "grafana-dashboard.json"):
        link = CHART / "files" / name
        assert link.is_symlink(), f"{link} must be a link to infrastructure/monitoring, not a copy"
        assert link.resolve() == (MONITORING / name).resolve()
    docs = manifests["everything-on"]
    rule = find(docs, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())
    assert "{{ $value" in json.dumps(rule["spec"])  # Prometheus' templates, untouched by Helm
    dashboard = find(docs, "ConfigMap", "-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["mysoulmate.json"]) == json.loads(
        (MONITORING / "grafana-dashboard.json").read_text()
    )
    monitor = find(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # The worker serves no HTTP but its metrics: a PodMonitor on its metrics port, which
    # its container declares and its settings tell it to serve.
    pods = find(docs, "PodMonitor")
    assert pods["spec"]["podMetricsEndpoints"][0] == {
        "port": "metrics",
        "path": "/metrics",
        "interval": "30s",
        "scrapeTimeout": "10s",
    }
    worker = find(docs, "Deployment", "-worker")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9102, "protocol": "TCP"}]
    settings = find(docs, "ConfigMap", f"{RELEASE}-mysoulmate")
    assert settings["data"]["WORKER_METRICS_PORT"] == "9102"
    assert not kinds(manifests["defaults"]) & {"PrometheusRule", "ServiceMonitor", "PodMonitor"}


def test_helm_test_hook_checks_health_through_the_service(manifests: dict[str, list[Doc]]) -> None:
    pod = find(manifests["defaults"], "Pod", "-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["args"][0]
    assert f"http://{RELEASE}-mysoulmate-api:80" in script
    assert "/health/ready" in script
    compile(script, "helm-test", "exec")  # the pod's Python is valid Python


# ---- values: documented, typed, strict ---------------------------------------------------------


def leaves(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Paths of the values, down to the schema's fixed keys (a map of labels is one value).
    A key the schema does not know is yielded as it is, for the caller to report."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        node = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict) and "properties" in node:
            yield from leaves(value, node, f"{path}.")
        else:
            yield path


def test_every_value_is_documented_and_in_the_schema() -> None:
    text = (CHART / "values.yaml").read_text()
    documented = set(re.findall(r"^\s*## @param (\S+) \S", text, re.MULTILINE))
    values = yaml.safe_load(text)
    schema = json.loads((CHART / "values.schema.json").read_text())
    paths = set(leaves(values, schema))
    assert paths - documented == set(), "values without a `## @param` line"
    assert documented - paths == set(), "`## @param` lines naming no value"

    def strict(node: dict[str, Any], where: str) -> Iterator[str]:
        if "properties" in node:
            if node.get("additionalProperties") is not False:
                yield where
            for key, child in node["properties"].items():
                yield from strict(child, f"{where}.{key}")
        if isinstance(node.get("items"), dict):
            yield from strict(node["items"], f"{where}[]")

    assert list(strict(schema, "")) == [], "objects of the schema that admit unknown keys"
    for path in paths:
        node = schema
        for key in path.split("."):
            assert key in node.get("properties", {}), f"{path} is not in values.schema.json"
            node = node["properties"][key]


# ---- checkov ------------------------------------------------------------------------------------


def test_checkov_passes_but_for_the_listed_and_justified_checks(
    manifests: dict[str, list[Doc]], tmp_path: Path
) -> None:
    if not CHECKOV.exists():
        require_service(f"checkov is not installed at {CHECKOV}: run `make checkov`")
    for case, docs in manifests.items():
        (tmp_path / f"{case}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    result = subprocess.run(
        [
            *(str(CHECKOV), "--framework", "kubernetes", "--directory", str(tmp_path)),
            *("--output", "json", "--quiet", "--skip-download"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
    )
    report = json.loads(result.stdout)
    assert report["summary"]["passed"] > 200, report["summary"]  # it did check something
    skips = yaml.safe_load(CHECKOV_SKIPS.read_text())["skips"]
    for skip in skips:
        assert len(skip["reason"]) > 80, f"{skip['check']}: say why"
    used: set[str] = set()
    unlisted = []
    for failed in report["results"]["failed_checks"]:
        kind, _, name = failed["resource"].split(".", 2)
        resource = f"{kind}/{name}"
        matching = [
            s
            for s in skips
            if s["check"] == failed["check_id"]
            and any(fnmatch.fnmatch(resource, pattern) for pattern in s["resources"])
        ]
        if matching:
            used.add(matching[0]["check"])
        else:
            unlisted.append(
                f"{failed['check_id']} {failed['check_name']}: {resource} ({failed['file_path']})"
            )
    assert unlisted == [], "fix these or list them with a reason in checkov-skips.yaml"
    assert {s["check"] for s in skips} - used == set(), "stale entries in checkov-skips.yaml"
    digest_failures = [
        f
        for f in report["results"]["failed_checks"]
        if f["check_id"] == "CKV_K8S_43" and "everything-on" in f["file_path"]
    ]
    assert digest_failures == []  # with image.digest set the image is pinned


def test_reports_run_daily_and_weekly_as_cronjobs_of_the_same_image(
    manifests: dict[str, list[Doc]],
) -> None:
    assert "CronJob" not in kinds(manifests["defaults"])
    for case, storage in (("everything-on", "volume"), ("reports-to-s3", "s3")):
        jobs = {d["metadata"]["name"]: d for d in manifests[case] if d["kind"] == "CronJob"}
        daily = jobs[f"{RELEASE}-mysoulmate-report-daily"]["spec"]
        weekly = jobs[f"{RELEASE}-mysoulmate-report-weekly"]["spec"]
        assert (daily["schedule"], weekly["schedule"]) == ("0 6 * * *", "0 6 * * 1")
        for spec, kind in ((daily, "day"), (weekly, "week")):
            assert spec["concurrencyPolicy"] == "Forbid"
            pod = spec["jobTemplate"]["spec"]["template"]["spec"]
            (container,) = pod["containers"]
            assert container["args"] == ["report", "--period", kind]
            env = {e["name"]: e["value"] for e in container["env"]}
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["resources"]["limits"]["memory"] == "1Gi"
            if storage == "s3":
                assert env["REPORTS_BUCKET"] == "mysoulmate-reports"
                assert spec["timeZone"] == "Europe/Paris"
                assert "reports" not in {v["name"] for v in pod["volumes"]}
            else:
                assert env["REPORTS_DIR"] == "/reports"
                assert env["REPORT_LOCALE"] == "fr"
                (claim,) = [v for v in pod["volumes"] if v["name"] == "reports"]
                assert claim["persistentVolumeClaim"]["claimName"] == "mysoulmate-reports"


def test_reports_need_somewhere_to_go() -> None:
    with pytest.raises(Exception, match=r"reports\.existingClaim"):
        render({"reports": {"enabled": True}})


def test_images_read_their_originals_from_s3_when_a_bucket_is_set(
    manifests: dict[str, list[Doc]],
) -> None:
    settings = find(manifests["reports-to-s3"], "ConfigMap", f"{RELEASE}-mysoulmate")["data"]
    assert settings["MEDIA_ORIGINALS_BUCKET"] == "mysoulmate-media"
    assert settings["MEDIA_REQUIRE_SIGNED"] == "true"
    assert "MEDIA_SIGNING_SECRET" not in settings  # a secret: the Secret holds it
    defaults = find(manifests["defaults"], "ConfigMap", f"{RELEASE}-mysoulmate")["data"]
    assert not [k for k in defaults if k.startswith("MEDIA_")]

"""The SAM template and samconfig.toml, checked with the real tools, offline.

1. cfn-lint, `sam validate --lint`, `sam validate` (no credentials needed);
2. static properties of the parsed template (security, reliability, wiring), including the
   alarms: each watches a metric of a resource this stack creates and notifies AlertsTopic,
   and the dashboard's !Sub body is JSON once filled in;
3. SAM -> CloudFormation with samtranslator, then the stack created in moto, so that the queues,
   table, functions, event source mapping, log groups and roles really come into existence and
   are wired to one another;
4. `sam build` (slow): the arm64 layer holds the package, its data (i18n catalogs) and its
   dependencies.

StorageBackend=aurora adds, under CloudFormation conditions, a private VPC, an Aurora Serverless
v2 cluster behind an RDS Proxy, and a migration custom resource. The tools lint every condition;
the assertions evaluate the conditions for a given parameter set first (`resolved`), the way
CloudFormation does before it creates anything.
"""

from __future__ import annotations

import ast
import copy
import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import boto3
import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from mysoulmate.storage.dynamodb.store import table_schema

REPO = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO / "template.yaml"
SAMCONFIG_PATH = REPO / "samconfig.toml"

FUNCTIONS = {
    "AnalyticsFunction": "analytics",
    "HealthFunction": "health",
    "I18nFunction": "i18n",
    "DocsFunction": "docs",
    "ConsumerFunction": "consumer",
    "AlertsFunction": "alerts",
    "ReportsFunction": "reports",
    "ReportSummaryFunction": "report-summary",
    "MediaFunction": "media",
}
API_FUNCTIONS = {
    "AnalyticsFunction",
    "HealthFunction",
    "I18nFunction",
    "DocsFunction",
    "MediaFunction",
}
# With StorageBackend=aurora these join the database VPC; i18n, docs and alerts never do (no
# database to reach; alerts must reach Slack on the internet).
DATABASE_FUNCTIONS = {"AnalyticsFunction", "HealthFunction", "ConsumerFunction", "ReportsFunction"}
# Exists only with StorageBackend=aurora: the migration custom resource's function.
AURORA_FUNCTIONS = {"MigrateFunction": "migrate"}
# Exist only when the stack forwards to that provider: one forwarder each, the same code.
FORWARDER_FUNCTIONS = {
    "MixpanelForwarderFunction": "forwarder",
    "Ga4ForwarderFunction": "forwarder",
}
# Parameters that turn forwarding to both providers on (names of SSM parameters only).
FORWARDING = {
    "MixpanelTokenParameter": "/mysoulmate/prod/mixpanel-token",
    "MixpanelApiSecretParameter": "/mysoulmate/prod/mixpanel-api-secret",
    "MixpanelGdprTokenParameter": "/mysoulmate/prod/mixpanel-gdpr-token",
    "GaMeasurementId": "G-TEST12345",
    "GaApiSecretParameter": "/mysoulmate/prod/ga-api-secret",
}

# API function -> (the group's router module, the authorizer of its routes): None is the
# HttpApi's default (the JWT authorizer), "NONE" a public route. The routes themselves come
# from the routers the function's app.py imports (`served_routers`: the group's module, and any
# other router of mysoulmate.api it adds), so a route added to a router must be added to the
# template too, or test_http_api_routes_every_operation_of_each_function fails.
API_GROUPS = {
    "AnalyticsFunction": ("mysoulmate.api.analytics", None),
    "HealthFunction": ("mysoulmate.api.health", "NONE"),
    "I18nFunction": ("mysoulmate.api.i18n", "NONE"),
    "DocsFunction": ("mysoulmate.api.docs", "NONE"),
    "MediaFunction": ("mysoulmate.api.media", "NONE"),
}
# Path prefixes of a JWT group that API Gateway lets through without a token, because the
# function authenticates them itself: the Segment-compatible ingest routes of stock SDKs
# (a write key, as the HTTP Basic user name or writeKey in the body).
SELF_AUTHENTICATED_PATHS = {"AnalyticsFunction": ("/v1/",)}
# Routers no function serves, and why. Every router of mysoulmate.api is in one of the two.
UNROUTED_ROUTERS = {
    # /metrics and /api/v1/metrics: container and laptop only. On Lambda, metrics go to
    # CloudWatch as EMF; a Prometheus registry per Lambda container would count only that
    # container's requests, so scraping or reading it through API Gateway would be meaningless.
    "mysoulmate.api.metrics": "container and laptop only (Lambda: EMF to CloudWatch)",
}
# Variables a function gets beyond REQUIRED_ENV (and, with aurora, the database's).
FUNCTION_ENV = {
    "AnalyticsFunction": {"SECRETS_SSM_PATH"},
    "I18nFunction": {"DEFAULT_LOCALE", "SUPPORTED_LOCALES"},
    "AlertsFunction": {"SLACK_WEBHOOK_PARAMETER"},
    "ReportsFunction": {"REPORTS_BUCKET", "REPORT_LOCALE", "EVENTS_DLQ_URL"},
    "ReportSummaryFunction": {"REPORTS_BUCKET", "REPORT_LOCALE", "SLACK_WEBHOOK_PARAMETER"},
    "MediaFunction": {"MEDIA_ORIGINALS_BUCKET", "MEDIA_DERIVATIVES_BUCKET", "MEDIA_REQUIRE_SIGNED"},
}

# Variables the code reads (mysoulmate.core.settings, observability); each function must get all.
REQUIRED_ENV = {
    "STAGE",
    "APP_VERSION",
    "LOG_LEVEL",
    "STORAGE_BACKEND",
    "QUEUE_BACKEND",
    "EVENTS_TABLE",
    "EVENTS_QUEUE_URL",
    "AUTH_MODE",
    "ADMIN_ROLE",
    "CORS_ALLOW_ORIGINS",
    "EVENT_RETENTION_DAYS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
    "SENTRY_TRACES_SAMPLE_RATE",
    "PERF_REGRESSION_THRESHOLD",
    "PYDANTIC_DISABLE_PLUGINS",
}

SECRETISH = re.compile(
    r"secret|token|password|passwd|dsn|credential|webhook|api_?key|private", re.I
)


def looks_secret(name: str) -> bool:
    """A name that suggests a secret value; a *path* to secrets in SSM, the *name* of an SSM
    parameter holding one, or the ARN of a Secrets Manager secret, is not one."""
    return bool(SECRETISH.search(name)) and not re.search(
        r"(ssm_?path|_arn|_?parameter)$", name, re.I
    )


# ----------------------------------------------------------------------------- helpers


def load_template() -> dict[str, Any]:
    """The template as plain JSON-like data; tags become {"Ref": ...}, {"Fn::Sub": ...}, ..."""
    from cfnlint.decode import decode_str

    parsed, problems = decode_str(TEMPLATE_PATH.read_text())
    assert not problems, f"template.yaml does not parse: {problems}"
    # cfn-lint returns node classes carrying line marks; a JSON round-trip gives plain types.
    data: dict[str, Any] = json.loads(json.dumps(parsed))
    return data


def console_script(name: str) -> str:
    """A console script of the running environment, else the one on PATH; fail if neither."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (it is a dev dependency: pip install -e '.[dev]')")
    return found


def tool_env() -> dict[str, str]:
    """Environment for sam/cfn-lint: no telemetry, no metadata-service lookups, venv first."""
    env = dict(os.environ)
    env["SAM_CLI_TELEMETRY"] = "0"
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_tool(
    args: list[str], timeout: float = 120, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=REPO,
        env=kwargs.pop("env", None) or tool_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


def effective_function(template: dict[str, Any], name: str) -> dict[str, Any]:
    """A function's properties with Globals.Function merged in, the way SAM merges them."""
    merged = copy.deepcopy(template.get("Globals", {}).get("Function", {}))
    props = template["Resources"][name]["Properties"]
    for key, value in props.items():
        if key == "Environment":
            variables = merged.get("Environment", {}).get("Variables", {})
            variables.update(value.get("Variables", {}))
            merged["Environment"] = {"Variables": variables}
        elif key == "Layers":  # SAM appends a function's layers to the Globals' ones
            merged["Layers"] = [*merged.get("Layers", []), *copy.deepcopy(value)]
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def mapped(template: dict[str, Any], node: Any) -> Any:
    """The value of a `!FindInMap [map, key, key]` (constants shared by several resources)."""
    name, top, second = node["Fn::FindInMap"]
    return template["Mappings"][name][top][second]


def resources_of(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def refs_in(node: Any) -> Iterator[str]:
    """Logical ids a template fragment refers to (Ref, GetAtt, ${X} in Sub)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                yield value
            elif key == "Fn::GetAtt":
                yield value[0] if isinstance(value, list) else value.split(".")[0]
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                for name in re.findall(r"\$\{([^!}][^}]*)\}", text):
                    yield name.split(".")[0]
                if isinstance(value, list):
                    yield from refs_in(value[1])
            else:
                yield from refs_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs_in(item)


_NO_VALUE = object()


def condition_values(template: dict[str, Any], values: dict[str, str]) -> dict[str, bool]:
    """Every condition of the template, evaluated for these parameter values (defaults for
    the rest), with the intrinsics conditions may use."""
    params = {k: str(v.get("Default", "")) for k, v in template["Parameters"].items()}
    params.update(values)
    conditions = template.get("Conditions", {})

    def value(node: Any) -> str:
        if isinstance(node, dict):
            (key, arg), *_ = node.items()
            assert key == "Ref", f"unsupported in a condition: {node}"
            return params[arg]
        return str(node)

    def evaluate(node: Any) -> bool:
        (key, arg), *_ = node.items()
        if key == "Fn::Equals":
            return value(arg[0]) == value(arg[1])
        if key == "Fn::Not":
            return not evaluate(arg[0])
        if key == "Fn::And":
            return all(evaluate(a) for a in arg)
        if key == "Fn::Or":
            return any(evaluate(a) for a in arg)
        if key == "Condition":
            return evaluate(conditions[arg])
        raise AssertionError(f"unsupported condition function {key}")

    return {name: evaluate(node) for name, node in conditions.items()}


def _resolve(node: Any, conditions: dict[str, bool]) -> Any:
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            name, when_true, when_false = node["Fn::If"]
            return _resolve(when_true if conditions[name] else when_false, conditions)
        if node == {"Ref": "AWS::NoValue"}:
            return _NO_VALUE
        resolved_dict = {}
        for key, item in node.items():
            result = _resolve(item, conditions)
            if result is not _NO_VALUE:
                resolved_dict[key] = result
        return resolved_dict
    if isinstance(node, list):
        results = [_resolve(item, conditions) for item in node]
        return [r for r in results if r is not _NO_VALUE]
    return node


def resolved(template: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """The template as CloudFormation sees it for these parameters: resources and outputs
    whose condition is false removed, every Fn::If decided, AWS::NoValue dropped.

    Globals are merged into the functions first, as SAM does before CloudFormation evaluates
    anything: a function's `VpcConfig: !Ref AWS::NoValue` replaces the Globals' VpcConfig and
    then disappears, instead of letting the Globals' value back in."""
    conditions = condition_values(template, values)
    out = copy.deepcopy(template)
    if "Globals" in out:
        for name, resource in out["Resources"].items():
            if resource["Type"] == "AWS::Serverless::Function":
                resource["Properties"] = effective_function(template, name)
        del out["Globals"]
    for section in ("Resources", "Outputs"):
        out[section] = {
            k: v
            for k, v in out.get(section, {}).items()
            if conditions.get(v.get("Condition", ""), True)
        }
    for section in ("Resources", "Outputs"):
        if section in out:
            out[section] = _resolve(out[section], conditions)
    return out


def function_names(template: dict[str, Any]) -> dict[str, str]:
    """Logical id -> short name of the functions this (resolved) template creates."""
    present = {**FUNCTIONS, **AURORA_FUNCTIONS, **FORWARDER_FUNCTIONS}
    return {k: v for k, v in present.items() if k in template["Resources"]}


def router_of(module: str) -> APIRouter:
    router = importlib.import_module(module).router
    assert isinstance(router, APIRouter), module
    return router


def operations(router: APIRouter) -> list[RouteContext]:
    """Every route of a router, those of the routers it includes too: FastAPI keeps an included
    router as one entry of `routes`, and `iter_route_contexts` expands it, prefixes applied
    (each item has `.path`, `.methods`, `.endpoint` and `.original_route`)."""
    return list(iter_route_contexts(router.routes))


def api_routes(module: str | APIRouter) -> set[tuple[str, str]]:
    """(method, path) of every operation of a router, as its function's FastAPI app serves it.
    API Gateway's path parameters are FastAPI's `{name}`; a path converter (`{name:path}`, a
    key with slashes) is API Gateway's greedy `{name+}`, which must end the path."""
    router = router_of(module) if isinstance(module, str) else module
    routes = set()
    for route in operations(router):
        assert isinstance(route.original_route, APIRoute), f"{module}: {route!r} is no APIRoute"
        path, methods = route.path, route.methods
        assert path, f"{module}: {route!r}"
        assert methods, f"{module}: {route!r}"
        path = re.sub(r"\{([A-Za-z][A-Za-z0-9_]*):path\}$", r"{\1+}", path)
        assert re.fullmatch(
            r"(/[A-Za-z0-9_.-]*|/\{[A-Za-z][A-Za-z0-9_]*\})+(/\{[A-Za-z]\w*\+\})?", path
        ), f"{module}: {path} has no API Gateway equivalent"
        routes |= {(method, path) for method in methods}
    return routes


def served_routers(function: str) -> dict[str, APIRouter]:
    """Module -> router, for every APIRouter of mysoulmate.api that the function's app.py
    imports (`from mysoulmate.api.x import router`, under any alias): what its app serves."""
    app = REPO / "functions" / FUNCTIONS[function] / "app.py"
    found: dict[str, APIRouter] = {}
    for node in ast.walk(ast.parse(app.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith(
            "mysoulmate.api"
        ):
            continue
        module = importlib.import_module(node.module or "")
        for alias in node.names:
            value = getattr(module, alias.name, None)
            if value is None and hasattr(module, "__path__"):  # a submodule not yet imported
                value = importlib.import_module(f"{module.__name__}.{alias.name}")
            if isinstance(value, ModuleType):  # from mysoulmate.api import segment
                value, origin = getattr(value, "router", None), value.__name__
            else:  # from mysoulmate.api.segment import router
                origin = module.__name__
            if isinstance(value, APIRouter):
                found[origin] = value
    return found


def function_routes(function: str) -> set[tuple[str, str]]:
    """(method, path) of every operation the function's app serves."""
    return {route for router in served_routers(function).values() for route in api_routes(router)}


def expected_authorizer(function: str, path: str) -> str | None:
    """The Auth.Authorizer a route of this function must have (None: the JWT default)."""
    if path.startswith(SELF_AUTHENTICATED_PATHS.get(function, ())):
        return "NONE"
    return API_GROUPS[function][1]


def endpoints(router: APIRouter) -> set[Any]:
    """The endpoint callables of a router's operations: a router included in another one
    keeps them (under a longer path), so they tell which routers an app really serves."""
    return {route.endpoint for route in operations(router)}


def http_api_events(template: dict[str, Any], name: str) -> dict[tuple[str, str], Any]:
    """(method, path) -> the Auth.Authorizer (None: the API's default) of a function's routes."""
    found: dict[tuple[str, str], Any] = {}
    for event in template["Resources"][name]["Properties"].get("Events", {}).values():
        if event["Type"] != "HttpApi":
            continue
        props = event["Properties"]
        assert props["ApiId"] == {"Ref": "HttpApi"}, name
        route = (props["Method"].upper(), props["Path"])
        assert route not in found, f"{name} routes {route} twice"
        found[route] = props.get("Auth", {}).get("Authorizer")
    return found


def expected_routes() -> dict[tuple[str, str], tuple[str, str | None]]:
    """(method, path) -> (function, authorizer) of every route the HTTP API must have."""
    return {
        route: (function, expected_authorizer(function, route[1]))
        for function in API_GROUPS
        for route in function_routes(function)
    }


BACKENDS = ("dynamodb", "aurora")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def dynamodb_stack(template: dict[str, Any]) -> dict[str, Any]:
    return resolved(template, {"StorageBackend": "dynamodb"})


@pytest.fixture(scope="module")
def aurora_stack(template: dict[str, Any]) -> dict[str, Any]:
    return resolved(template, {"StorageBackend": "aurora"})


@pytest.fixture(
    scope="module",
    params=[(b, f) for f in (False, True) for b in BACKENDS],
    ids=lambda p: f"{p[0]}{'-forwarding' if p[1] else ''}",
)
def stack(request: pytest.FixtureRequest, template: dict[str, Any]) -> dict[str, Any]:
    """The template resolved for each storage backend in turn, without and with forwarding
    to both analytics providers."""
    backend, forwarding = request.param
    return resolved(template, {"StorageBackend": backend, **(FORWARDING if forwarding else {})})


# ----------------------------------------------------------------------------- the tools


def test_cfn_lint_passes() -> None:
    result = run_tool([console_script("cfn-lint"), str(TEMPLATE_PATH)])
    assert result.returncode == 0, f"cfn-lint:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("stage", ["dev", "prod"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_cfn_lint_passes_with_each_storage_backend(backend: str, stage: str) -> None:
    """cfn-lint evaluates the conditions for the given parameter values (a deployment)."""
    result = run_tool(
        [
            console_script("cfn-lint"),
            str(TEMPLATE_PATH),
            "--parameters",
            f"StorageBackend={backend}",
            f"Stage={stage}",
            "JwtIssuer=https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example",
            "JwtAudience=client-one",
        ]
    )
    assert result.returncode == 0, f"cfn-lint ({backend}, {stage}):\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize(
    "flags", [["--lint"], ["--region", "us-east-1"]], ids=["lint", "region-us-east-1"]
)
def test_sam_validate_passes(flags: list[str]) -> None:
    # No credentials are needed; the tests' dummy AWS_* variables are harmless to sam.
    result = run_tool(
        [console_script("sam"), "validate", "--template-file", str(TEMPLATE_PATH), *flags]
    )
    assert result.returncode == 0, f"sam validate {flags}:\n{result.stdout}\n{result.stderr}"
    assert "is a valid SAM Template" in result.stdout + result.stderr


# ----------------------------------------------------------------------------- static checks


def test_transform_and_globals(template: dict[str, Any]) -> None:
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    glob = template["Globals"]["Function"]
    assert glob["Runtime"] == "python3.12"
    assert glob["Architectures"] == ["arm64"]
    assert glob["Tracing"] == "Active"
    assert glob["Layers"] == [{"Ref": "CommonLayer"}]
    assert glob["MemorySize"] == 512
    assert isinstance(glob["Timeout"], int)
    assert glob["Timeout"] <= 29, "HTTP API integrations stop at 30 s"
    # No function may quietly override the runtime shape.
    for name in resources_of(template, "AWS::Serverless::Function"):
        fn = effective_function(template, name)
        assert (fn["Runtime"], fn["Architectures"], fn["Tracing"]) == (
            "python3.12",
            ["arm64"],
            "Active",
        )
        assert fn["Layers"] == [{"Ref": "CommonLayer"}, *OWN_LAYERS.get(name, [])], name


def test_functions_code_and_handlers(template: dict[str, Any]) -> None:
    functions = resources_of(template, "AWS::Serverless::Function")
    assert set(functions) == set(FUNCTIONS) | set(AURORA_FUNCTIONS) | set(FORWARDER_FUNCTIONS)
    assert set(resources_of(resolved(template, {}), "AWS::Serverless::Function")) == set(FUNCTIONS)
    for name, short in {**FUNCTIONS, **AURORA_FUNCTIONS}.items():
        props = functions[name]["Properties"]
        assert props["CodeUri"] == f"functions/{short}/"
        assert props["Handler"] == "app.handler"
        assert (REPO / "functions" / short).is_dir()
    consumer = effective_function(template, "ConsumerFunction")
    assert (mapped(template, consumer["Timeout"]), consumer["MemorySize"]) == (30, 1024)


# Functions with a layer of their own (after the common one): heavy dependencies only they use.
OWN_LAYERS = {
    "ReportsFunction": [{"Ref": "ReportsLayer"}],
    "MigrateFunction": [{"Ref": "MigrationsLayer"}],
}


@pytest.mark.parametrize(
    ("layer", "directory"),
    [("ReportsLayer", "reports"), ("MigrationsLayer", "migrations")],
)
def test_own_layers_are_built_like_the_common_one(
    template: dict[str, Any], layer: str, directory: str
) -> None:
    props = template["Resources"][layer]["Properties"]
    assert props["ContentUri"] == f"layers/{directory}/"
    assert props["CompatibleRuntimes"] == ["python3.12"]
    assert props["CompatibleArchitectures"] == ["arm64"]
    assert template["Resources"][layer]["Metadata"] == {
        "BuildMethod": "python3.12",
        "BuildArchitecture": "arm64",
    }
    common = (REPO / "layers/common/requirements.txt").read_text()
    for line in (REPO / f"layers/{directory}/requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert "==" in line, f"layer requirement not pinned: {line!r}"
            name = line.split("==")[0].lower()
            if name != "markupsafe":  # shared by Mako and Jinja2, pinned alike
                assert f"\n{name}==" not in "\n" + common.lower(), f"{name} in two layers"


def test_common_layer(template: dict[str, Any]) -> None:
    layer = template["Resources"]["CommonLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    props = layer["Properties"]
    assert props["ContentUri"] == "layers/common/"
    assert props["CompatibleRuntimes"] == ["python3.12"]
    assert props["CompatibleArchitectures"] == ["arm64"]
    assert layer["Metadata"] == {"BuildMethod": "python3.12", "BuildArchitecture": "arm64"}
    assert (REPO / "layers/common/requirements.txt").is_file()
    for line in (REPO / "layers/common/requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert "==" in line, f"layer requirement not pinned: {line!r}"


def test_parameters(template: dict[str, Any]) -> None:
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    params = template["Parameters"]
    assert params["Stage"]["AllowedValues"] == ["dev", "staging", "prod"]
    assert params["Stage"]["Default"] == "dev"
    assert params["StorageBackend"]["AllowedValues"] == ["dynamodb", "aurora"]
    assert params["StorageBackend"]["Default"] == "dynamodb"
    assert params["JwtAudience"]["Type"] == "CommaDelimitedList"
    assert params["CorsAllowOrigins"]["Type"] == "CommaDelimitedList"
    assert "Default" not in params["JwtIssuer"], "each environment names its issuer"
    assert "AppVersion" in params
    # Retention must be exactly the values CloudWatch Logs accepts (from cfn-lint's schema).
    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", "AWS::Logs::LogGroup")
    valid = schema.schema["properties"]["RetentionInDays"]["enum"]
    assert sorted(params["LogRetentionDays"]["AllowedValues"]) == sorted(valid)
    assert params["LogRetentionDays"]["Default"] == 30


def test_secrets_ssm_path_pattern(template: dict[str, Any]) -> None:
    param = template["Parameters"]["SecretsSsmPath"]
    assert param["Default"] == "/mysoulmate/dev/"
    pattern = re.compile(param["AllowedPattern"])
    for good in ("/mysoulmate/dev/", "/mysoulmate/prod/", "/a/"):
        assert pattern.fullmatch(good), good
    # The policy grants "${SecretsSsmPath}*": without both slashes it would grant too much.
    for bad in ("mysoulmate/dev/", "/mysoulmate/dev", "/", "/mysoulmate/*/", "//"):
        assert not pattern.fullmatch(bad), bad


def test_no_plain_text_secrets(template: dict[str, Any]) -> None:
    for name, param in template["Parameters"].items():
        if looks_secret(name):
            assert param.get("NoEcho") is True, f"secret-like parameter {name} must be NoEcho"
            assert "Default" not in param, f"secret-like parameter {name} must not have a default"
        default = str(param.get("Default", ""))
        assert not re.fullmatch(r"[A-Za-z0-9+/=_\-]{32,}", default), (
            f"{name} default looks like a key"
        )
    for backend in BACKENDS:
        stack = resolved(template, {"StorageBackend": backend})
        for name in function_names(stack):
            variables = effective_function(stack, name)["Environment"]["Variables"]
            leaked = [k for k in variables if looks_secret(k)]
            assert not leaked, f"{name}: secrets belong in SSM/Secrets Manager: {leaked}"


SLACK_WEBHOOK_NAME = {
    "Fn::If": [
        "HasSlackWebhookParameter",
        {"Ref": "SlackWebhookParameter"},
        {"Fn::Sub": "${SecretsSsmPath}slack-webhook-url"},
    ]
}
# Environment variable naming what a function may read in SSM -> (its value, the policy).
SSM_ACCESS = {
    "SECRETS_SSM_PATH": (
        {"Ref": "SecretsSsmPath"},
        {
            "SSMParameterWithSlashPrefixReadPolicy": {
                "ParameterName": {"Fn::Sub": "${SecretsSsmPath}*"}
            }
        },
    ),
    "SLACK_WEBHOOK_PARAMETER": (
        SLACK_WEBHOOK_NAME,
        {"SSMParameterWithSlashPrefixReadPolicy": {"ParameterName": SLACK_WEBHOOK_NAME}},
    ),
    # The provider secrets: the forwarder of that provider, and (token and GDPR token) the
    # analytics function for deletion requests on erasure.
    **{
        variable: (
            {"Ref": parameter},
            {"SSMParameterWithSlashPrefixReadPolicy": {"ParameterName": {"Ref": parameter}}},
        )
        for variable, parameter in {
            "MIXPANEL_TOKEN_PARAMETER": "MixpanelTokenParameter",
            "MIXPANEL_API_SECRET_PARAMETER": "MixpanelApiSecretParameter",
            "MIXPANEL_GDPR_TOKEN_PARAMETER": "MixpanelGdprTokenParameter",
            "GA_API_SECRET_PARAMETER": "GaApiSecretParameter",
        }.items()
    },
}


@pytest.mark.parametrize("forwarding", [False, True], ids=["plain", "forwarding"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_ssm_read_access_only_with_what_it_names_and_only_on_that(
    template: dict[str, Any], backend: str, forwarding: bool
) -> None:
    """A function may read SSM only where an environment variable tells the code to look:
    the stage's secrets path (its subtree), the one Slack webhook parameter, or the
    parameters holding the secrets of the one provider it talks to."""
    values = {"StorageBackend": backend, **(FORWARDING if forwarding else {})}
    stack, conditions = resolved(template, values), condition_values(template, values)
    holders = {}
    for name in function_names(stack):
        fn = effective_function(stack, name)
        ssm_policies = sorted(
            json.dumps(p, sort_keys=True)
            for p in fn.get("Policies", [])
            if isinstance(p, dict)
            and any(k.startswith("SSMParameter") for k in p)
            and p != SENTRY_POLICY
        )
        variables = fn["Environment"]["Variables"]
        named = [key for key in SSM_ACCESS if key in variables]
        expected = [_resolve(SSM_ACCESS[key][1], conditions) for key in named]
        assert ssm_policies == sorted(json.dumps(p, sort_keys=True) for p in expected), name
        for key in named:
            assert variables[key] == _resolve(SSM_ACCESS[key][0], conditions), (name, key)
        if named:
            holders[name] = named
    mixpanel = ["MIXPANEL_TOKEN_PARAMETER"]
    assert holders == {
        "AnalyticsFunction": [
            "SECRETS_SSM_PATH",
            *((*mixpanel, "MIXPANEL_GDPR_TOKEN_PARAMETER") if forwarding else ()),
        ],
        "AlertsFunction": ["SLACK_WEBHOOK_PARAMETER"],
        "ReportSummaryFunction": ["SLACK_WEBHOOK_PARAMETER"],
        **(
            {
                "MixpanelForwarderFunction": [*mixpanel, "MIXPANEL_API_SECRET_PARAMETER"],
                "Ga4ForwarderFunction": ["GA_API_SECRET_PARAMETER"],
            }
            if forwarding
            else {}
        ),
    }


SENTRY_POLICY = {
    "SSMParameterWithSlashPrefixReadPolicy": {"ParameterName": {"Ref": "SentryDsnParameter"}}
}


SENTRY_FUNCTIONS = {
    "AnalyticsFunction",
    "MediaFunction",
    "ReportsFunction",
    "HealthFunction",
    "I18nFunction",
    "ConsumerFunction",
    *FORWARDER_FUNCTIONS,
}


@pytest.mark.parametrize("backend", BACKENDS)
def test_sentry_dsn_is_read_from_ssm_only_when_configured(
    template: dict[str, Any], backend: str
) -> None:
    """The DSN never sits in the template: API functions and the consumer get the NAME of
    its parameter and read access to exactly that parameter, only when one is given."""
    name = "/mysoulmate/prod/sentry-dsn"
    on = resolved(template, {"StorageBackend": backend, "SentryDsnParameter": name})
    off = resolved(template, {"StorageBackend": backend})
    ref = {"Ref": "SentryDsnParameter"}  # resolved() decides conditions, not parameters
    grant = {"SSMParameterWithSlashPrefixReadPolicy": {"ParameterName": ref}}
    for logical in function_names(on):
        props = on["Resources"][logical]["Properties"]
        variables = props["Environment"]["Variables"]
        if logical in SENTRY_FUNCTIONS:
            assert variables["SENTRY_DSN_PARAMETER"] == ref, logical
            assert grant in props["Policies"], logical
        else:
            assert "SENTRY_DSN_PARAMETER" not in variables, logical
        assert "SENTRY_DSN" not in variables, logical
    for logical in function_names(off):
        props = off["Resources"][logical]["Properties"]
        assert "SENTRY_DSN_PARAMETER" not in props["Environment"]["Variables"], logical
        assert not any(
            isinstance(p, dict) and p.get("SSMParameterWithSlashPrefixReadPolicy") == grant
            for p in props.get("Policies", [])
        ), logical


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", "/mysoulmate/staging/slack-webhook-url"),
        ("/team/shared/slack-url", "/team/shared/slack-url"),
    ],
)
def test_slack_webhook_parameter_defaults_to_the_stage_secrets_path(
    template: dict[str, Any], given: str, expected: str
) -> None:
    values = {"SlackWebhookParameter": given, "SecretsSsmPath": "/mysoulmate/staging/"}
    fn = effective_function(resolved(template, values), "AlertsFunction")
    name = fn["Environment"]["Variables"]["SLACK_WEBHOOK_PARAMETER"]
    policy = fn["Policies"][0]["SSMParameterWithSlashPrefixReadPolicy"]["ParameterName"]
    assert name == policy  # the grant covers exactly the parameter the code reads
    if "Ref" in name:
        as_deployed = values[name["Ref"]]
    else:
        as_deployed = name["Fn::Sub"].replace("${SecretsSsmPath}", values["SecretsSsmPath"])
    assert as_deployed == expected
    pattern = re.compile(template["Parameters"]["SlackWebhookParameter"]["AllowedPattern"])
    for good in ("", "/mysoulmate/prod/slack-webhook-url", "/a"):
        assert pattern.fullmatch(good), good
    # With the slash-prefix policy a trailing * or a relative name would widen or break it.
    for bad in ("mysoulmate/prod/x", "/mysoulmate/*", "/a/", "https://hooks.slack.com/x"):
        assert not pattern.fullmatch(bad), bad


NO_ENI_STATEMENT = {
    "Sid": "NoNetworkInterfacesOutsideTheDatabaseVpc",
    "Effect": "Deny",
    "Action": [
        "ec2:CreateNetworkInterface",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    ],
    "Resource": "*",
}
SECRET_READ = {"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": "DatabaseSecret"}}}
SSM_READ = {
    "SSMParameterWithSlashPrefixReadPolicy": {"ParameterName": {"Fn::Sub": "${SecretsSsmPath}*"}}
}
SQS_SEND = {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["EventsQueue", "QueueName"]}}}
# The analytics function's writes (DynamoDB backend): GDPR erasure and the audit log only.
GDPR_WRITE_ACTIONS = [
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
]
GDPR_WRITES = {
    "Statement": [
        {
            "Sid": "GdprErasureAndAuditWrites",
            "Effect": "Allow",
            "Action": GDPR_WRITE_ACTIONS,
            "Resource": {"Fn::GetAtt": ["EventsTable", "Arn"]},
        }
    ]
}
# As resolved with the default (empty) SlackWebhookParameter.
SLACK_READ = {
    "SSMParameterWithSlashPrefixReadPolicy": {
        "ParameterName": {"Fn::Sub": "${SecretsSsmPath}slack-webhook-url"}
    }
}
# Never in a VPC, on either backend: nothing but the offset of SAM's VPC-access policy (and,
# for alerts, its one parameter). No storage, queue or secret permission at all.
OUTSIDE_VPC_POLICIES = {
    "I18nFunction": [{"Statement": [NO_ENI_STATEMENT]}],
    "DocsFunction": [{"Statement": [NO_ENI_STATEMENT]}],
    "AlertsFunction": [SLACK_READ, {"Statement": [NO_ENI_STATEMENT]}],
}


def test_policies_are_scoped_sam_templates_on_dynamodb(dynamodb_stack: dict[str, Any]) -> None:
    """Exactly the grants the DynamoDB stack always had, plus the deny that offsets SAM's
    VPC-access managed policy (attached because SAM cannot evaluate the VpcConfig !If)."""
    no_eni = {"Statement": [NO_ENI_STATEMENT]}
    expected = {
        "AnalyticsFunction": [
            SQS_SEND,
            {"DynamoDBReadPolicy": {"TableName": {"Ref": "EventsTable"}}},
            GDPR_WRITES,
            SSM_READ,
            no_eni,
        ],
        "ConsumerFunction": [{"DynamoDBCrudPolicy": {"TableName": {"Ref": "EventsTable"}}}, no_eni],
        **OUTSIDE_VPC_POLICIES,
    }
    resources = dynamodb_stack["Resources"]
    for name, policies in expected.items():
        assert resources[name]["Properties"]["Policies"] == policies, name
    # Health: metadata only, on the two resources it checks.
    health = resources["HealthFunction"]["Properties"]["Policies"]
    assert health[1:] == [no_eni]
    statements = health[0]["Statement"]
    assert {(s["Action"], json.dumps(s["Resource"])) for s in statements} == {
        ("dynamodb:DescribeTable", json.dumps({"Fn::GetAtt": ["EventsTable", "Arn"]})),
        ("sqs:GetQueueAttributes", json.dumps({"Fn::GetAtt": ["EventsQueue", "Arn"]})),
    }
    for name in FUNCTIONS:
        assert "Role" not in resources[name]["Properties"], "SAM builds the roles"


def test_policies_on_aurora_read_the_secret_and_never_dynamodb(
    aurora_stack: dict[str, Any],
) -> None:
    resources = aurora_stack["Resources"]
    assert resources["AnalyticsFunction"]["Properties"]["Policies"] == [
        SQS_SEND,
        SSM_READ,
        SECRET_READ,
    ]
    assert resources["ConsumerFunction"]["Properties"]["Policies"] == [SECRET_READ]
    assert resources["MigrateFunction"]["Properties"]["Policies"] == [SECRET_READ]
    for name, policies in OUTSIDE_VPC_POLICIES.items():
        assert resources[name]["Properties"]["Policies"] == policies, name
    health = resources["HealthFunction"]["Properties"]["Policies"]
    assert health[1:] == [SECRET_READ]
    assert [(s["Action"], s["Resource"]) for s in health[0]["Statement"]] == [
        ("sqs:GetQueueAttributes", {"Fn::GetAtt": ["EventsQueue", "Arn"]})
    ]
    assert "dynamodb" not in json.dumps(
        [
            resources[n]["Properties"]["Policies"]
            for n in resources
            if resources[n]["Type"] == "AWS::Serverless::Function"
        ]
    )
    for name in function_names(aurora_stack):
        assert "Role" not in resources[name]["Properties"], "SAM builds the roles"


def test_every_function_has_a_log_group_with_retention(template: dict[str, Any]) -> None:
    for name, short in {**FUNCTIONS, **AURORA_FUNCTIONS}.items():
        fn = effective_function(template, name)
        group_ref = fn["LoggingConfig"]["LogGroup"]
        assert set(group_ref) == {"Ref"}, f"{name} must log to a log group of this template"
        group = template["Resources"][group_ref["Ref"]]
        assert group["Type"] == "AWS::Logs::LogGroup"
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        name_sub = group["Properties"]["LogGroupName"]["Fn::Sub"]
        assert name_sub == f"/aws/lambda/${{AWS::StackName}}-{short}"
    groups = resources_of(template, "AWS::Logs::LogGroup")
    for group_id, group in groups.items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, group_id


def test_api_functions_use_snapstart_through_an_alias(template: dict[str, Any]) -> None:
    for name in FUNCTIONS:
        props = template["Resources"][name]["Properties"]
        if name in API_FUNCTIONS:
            assert props["SnapStart"] == {"ApplyOn": "PublishedVersions"}, name
            assert props["AutoPublishAlias"] == "live", name
            # Otherwise a release that changes only the layer keeps the alias on old code.
            assert props["AutoPublishAliasAllProperties"] is True, name
        else:
            assert "SnapStart" not in props, f"{name} is not latency-sensitive"


@pytest.mark.parametrize("function", sorted(API_GROUPS))
def test_http_api_routes_every_operation_of_each_function(
    template: dict[str, Any], function: str
) -> None:
    """The function's HttpApi events are exactly the operations of the routers its app.py
    serves (a route missing here answers API Gateway's 404 on AWS only), each with its
    group's authorizer: analytics inherits the JWT default except on the /v1/* SDK routes,
    which check a write key themselves; the public groups opt out."""
    module, _ = API_GROUPS[function]
    routers = served_routers(function)
    # The group's own router is what the entry point serves (others may come with it).
    assert module in routers, f"functions/{FUNCTIONS[function]}/app.py does not serve {module}"
    served = ", ".join(sorted(routers))
    events = http_api_events(template, function)
    routes = function_routes(function)
    assert routes, served
    assert sorted(set(events) - routes) == [], f"{function} routes what {served} does not serve"
    assert sorted(routes - set(events)) == [], f"{function} lacks routes of {served}"
    for route, found in events.items():
        assert found == expected_authorizer(function, route[1]), (function, route, found)


def test_every_router_is_routed_or_excluded_on_purpose(template: dict[str, Any]) -> None:
    """A new router of mysoulmate.api needs a function (an app.py that imports it, or a router
    such an app serves that includes it) or a stated reason not to have one
    (UNROUTED_ROUTERS); nothing else in the template may be routed."""
    package = REPO / "layers" / "common" / "mysoulmate" / "api"
    routers: dict[str, APIRouter] = {}
    for path in package.glob("*.py"):
        module = f"mysoulmate.api.{path.stem}"
        found = getattr(importlib.import_module(module), "router", None)
        if isinstance(found, APIRouter):
            routers[module] = found
    assert set(UNROUTED_ROUTERS) <= set(routers)
    # One function per router: two would claim the same routes.
    owners: dict[str, str] = {}
    for function in API_GROUPS:
        for module in served_routers(function):
            assert module not in owners, f"{module} is served by {owners[module]} and {function}"
            owners[module] = function
    served = {
        endpoint
        for function in API_GROUPS
        for router in served_routers(function).values()
        for endpoint in endpoints(router)
    }
    for module, router in routers.items():
        if module in UNROUTED_ROUTERS:
            assert not endpoints(router) & served, f"{module} is served and excluded"
        else:
            assert endpoints(router) <= served, (
                f"{module}: no function serves it (app.py) and UNROUTED_ROUTERS gives no reason"
            )
    # The excluded routers' paths are nowhere in the HTTP API.
    routed = {
        route
        for name in resources_of(template, "AWS::Serverless::Function")
        for route in http_api_events(template, name)
    }
    for module in UNROUTED_ROUTERS:
        assert not api_routes(module) & routed, module
    assert routed == set(expected_routes())
    functions_with_routes = {
        name
        for name in resources_of(template, "AWS::Serverless::Function")
        if http_api_events(template, name)
    }
    assert functions_with_routes == set(API_GROUPS)


def test_every_function_directory_has_a_template_function_and_back(
    template: dict[str, Any],
) -> None:
    directories = {p.parent.name for p in (REPO / "functions").glob("*/app.py")}
    code_uris = {
        props["CodeUri"]
        for props in (
            f["Properties"] for f in resources_of(template, "AWS::Serverless::Function").values()
        )
    }
    assert code_uris == {f"functions/{d}/" for d in directories}
    everything = {**FUNCTIONS, **AURORA_FUNCTIONS, **FORWARDER_FUNCTIONS}
    assert set(everything.values()) == directories


def test_http_api_auth_cors_throttling_access_logs(template: dict[str, Any]) -> None:
    props = template["Resources"]["HttpApi"]["Properties"]
    auth = props["Auth"]
    authorizer = auth["Authorizers"][auth["DefaultAuthorizer"]]
    assert authorizer["IdentitySource"] == "$request.header.Authorization"
    assert authorizer["JwtConfiguration"] == {
        "issuer": {"Ref": "JwtIssuer"},
        "audience": {"Ref": "JwtAudience"},
    }
    cors = props["CorsConfiguration"]
    assert cors["AllowOrigins"] == {"Ref": "CorsAllowOrigins"}
    assert set(cors["AllowHeaders"]) >= {
        "Authorization",
        "Content-Type",
        "X-Request-Id",
        "Accept-Language",
        "X-Locale",
    }
    assert cors["ExposeHeaders"] == ["X-Request-Id"]
    # API Gateway answers preflights itself: a method missing here fails in browsers only.
    routed_methods = {method for method, _ in expected_routes()}
    assert set(cors["AllowMethods"]) == routed_methods | {"OPTIONS"}
    assert cors.get("AllowCredentials") is not True, "tokens travel in a header, not cookies"
    routes = props["DefaultRouteSettings"]
    assert routes["ThrottlingBurstLimit"] == {"Ref": "ApiThrottlingBurstLimit"}
    assert routes["ThrottlingRateLimit"] == {"Ref": "ApiThrottlingRateLimit"}
    logs = props["AccessLogSettings"]
    group = logs["DestinationArn"]["Fn::GetAtt"][0]
    assert template["Resources"][group]["Type"] == "AWS::Logs::LogGroup"
    fields = json.loads(logs["Format"])
    assert {"requestId", "status", "routeKey", "integrationError"} <= set(fields)


DATABASE_ENV = {"DATABASE_HOST", "DATABASE_NAME", "DATABASE_SECRET_ARN"}


def test_environment_variables(template: dict[str, Any], stack: dict[str, Any]) -> None:
    aurora = "DatabaseCluster" in stack["Resources"]
    for name, short in function_names(stack).items():
        variables = effective_function(stack, name)["Environment"]["Variables"]
        missing = REQUIRED_ENV - set(variables)
        assert not missing, f"{name} lacks {sorted(missing)}"
        assert variables["POWERTOOLS_SERVICE_NAME"] == short
        assert variables["STAGE"] == {"Ref": "Stage"}
        assert variables["STORAGE_BACKEND"] == ("postgres" if aurora else "dynamodb")
        assert (set(variables) >= DATABASE_ENV) is aurora, name
        assert not (DATABASE_ENV & set(variables)) or aurora, name
        assert variables["QUEUE_BACKEND"] == "sqs"
        assert variables["AUTH_MODE"] == "apigateway"
        assert variables["EVENTS_TABLE"] == {"Ref": "EventsTable"}
        assert variables["EVENTS_QUEUE_URL"] == {"Ref": "EventsQueue"}
        assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "MySoulmate"
        assert variables["EVENT_RETENTION_DAYS"] == "730"
        assert variables["PYDANTIC_DISABLE_PLUGINS"] == "__all__"
        for value in variables.values():
            # Lambda environment values must be strings once resolved.
            assert isinstance(value, (str, dict)), (name, value)


def test_queue_outlives_consumer_retries(template: dict[str, Any]) -> None:
    queue = template["Resources"]["EventsQueue"]["Properties"]
    consumer = effective_function(template, "ConsumerFunction")
    assert queue["VisibilityTimeout"] >= 6 * mapped(template, consumer["Timeout"])
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,
    }
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["MessageRetentionPeriod"] == 4 * 24 * 3600
    dlq = template["Resources"]["EventsDeadLetterQueue"]["Properties"]
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert dlq["SqsManagedSseEnabled"] is True
    # The DLQ accepts redrives only from the events queue (named after the stack).
    allow = dlq["RedriveAllowPolicy"]
    assert allow["redrivePermission"] == "byQueue"
    assert queue["QueueName"] == {"Fn::Sub": "${AWS::StackName}-events"}
    source_arn = "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:" + (
        "${AWS::StackName}-events"
    )
    assert allow["sourceQueueArnList"] == [{"Fn::Sub": source_arn}]


def test_consumer_event_source(template: dict[str, Any]) -> None:
    events = template["Resources"]["ConsumerFunction"]["Properties"]["Events"]
    sqs_events = [e["Properties"] for e in events.values() if e["Type"] == "SQS"]
    assert len(sqs_events) == 1
    source = sqs_events[0]
    assert source["Queue"] == {"Fn::GetAtt": ["EventsQueue", "Arn"]}
    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert source["BatchSize"] == 100
    # SQS requires a batching window for batches above 10.
    assert 0 < source["MaximumBatchingWindowInSeconds"] <= 300
    assert source["ScalingConfig"]["MaximumConcurrency"] >= 2


def test_events_table(template: dict[str, Any]) -> None:
    table = template["Resources"]["EventsTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"
    props = table["Properties"]
    # Exactly the keys and index the DynamoDB adapter queries.
    schema = table_schema()
    assert props["BillingMode"] == schema["BillingMode"]
    assert props["KeySchema"] == schema["KeySchema"]
    by_name = {a["AttributeName"]: a for a in props["AttributeDefinitions"]}
    assert sorted(by_name.values(), key=str) == sorted(schema["AttributeDefinitions"], key=str)
    assert props["GlobalSecondaryIndexes"] == schema["GlobalSecondaryIndexes"]
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert props["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["ApiUrl"]["Value"] == {
        "Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/"
    }
    assert outputs["EventsQueueUrl"]["Value"] == {"Ref": "EventsQueue"}
    assert outputs["EventsQueueArn"]["Value"] == {"Fn::GetAtt": ["EventsQueue", "Arn"]}
    assert outputs["EventsDeadLetterQueueUrl"]["Value"] == {"Ref": "EventsDeadLetterQueue"}
    assert outputs["EventsTableName"]["Value"] == {"Ref": "EventsTable"}
    assert outputs["CommonLayerArn"]["Value"] == {"Ref": "CommonLayer"}
    for name in FUNCTIONS:
        assert outputs[f"{name}Name"]["Value"] == {"Ref": name}
        assert outputs[f"{name}Arn"]["Value"] == {"Fn::GetAtt": [name, "Arn"]}


# ----------------------------------------------------------------------------- i18n


def test_i18n_function_is_public_stateless_and_configured(
    template: dict[str, Any], stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mysoulmate.core.settings import load_settings

    props = template["Resources"]["I18nFunction"]["Properties"]
    assert props["CodeUri"] == "functions/i18n/"
    # Its routes, every one public: no authorizer (the default JWT authorizer is opted out).
    routes = {
        (e["Properties"]["Method"], e["Properties"]["Path"]): e["Properties"].get("Auth")
        for e in props["Events"].values()
    }
    assert routes == {
        ("GET", "/api/v1/i18n/locales"): {"Authorizer": "NONE"},
        ("GET", "/api/v1/i18n/translations/{locale}"): {"Authorizer": "NONE"},
        ("GET", "/api/v1/i18n/translate"): {"Authorizer": "NONE"},
    }
    assert all(e["Type"] == "HttpApi" for e in props["Events"].values())
    fn = effective_function(stack, "I18nFunction")
    assert "VpcConfig" not in fn, "no database to reach, on either backend"
    assert fn["Policies"] == OUTSIDE_VPC_POLICIES["I18nFunction"]
    assert "DATABASE_SCHEMA_REVISION" not in fn["Environment"]["Variables"]
    variables = fn["Environment"]["Variables"]
    assert variables["DEFAULT_LOCALE"] == {"Ref": "DefaultLocale"}
    assert variables["SUPPORTED_LOCALES"] == {"Ref": "SupportedLocales"}
    params = template["Parameters"]
    assert params["DefaultLocale"]["Default"] == "en"
    assert params["SupportedLocales"]["Default"] == "en,fr,es,de,it,pt,ja,zh"
    # Every locale a parameter allows has a catalog in the layer; the defaults are accepted.
    catalogs = {p.stem for p in (REPO / "layers/common/mysoulmate/i18n/locales").glob("*.json")}
    assert set(params["DefaultLocale"]["AllowedValues"]) == catalogs
    pattern = re.compile(params["SupportedLocales"]["AllowedPattern"])
    assert pattern.fullmatch("en,fr,es,de,it,pt,ja,zh")
    assert pattern.fullmatch("de")
    assert not pattern.fullmatch("en,xx")
    assert not pattern.fullmatch("en, fr")
    monkeypatch.setenv("DEFAULT_LOCALE", params["DefaultLocale"]["Default"])
    monkeypatch.setenv("SUPPORTED_LOCALES", params["SupportedLocales"]["Default"])
    settings = load_settings()
    assert settings.supported_locales == ["en", "fr", "es", "de", "it", "pt", "ja", "zh"]
    assert settings.default_locale == "en"


# ----------------------------------------------------------------------------- docs


def test_docs_function_is_public_stateless_and_ships_its_assets(
    template: dict[str, Any], stack: dict[str, Any]
) -> None:
    props = template["Resources"]["DocsFunction"]["Properties"]
    assert props["CodeUri"] == "functions/docs/"
    assert all(e["Type"] == "HttpApi" for e in props["Events"].values())
    assert set(http_api_events(template, "DocsFunction").values()) == {"NONE"}
    fn = effective_function(stack, "DocsFunction")
    assert "VpcConfig" not in fn, "no database to reach, on either backend"
    # No data permission at all: no table, queue, SSM parameter (not even Sentry's) or secret.
    assert fn["Policies"] == OUTSIDE_VPC_POLICIES["DocsFunction"]
    variables = fn["Environment"]["Variables"]
    assert not {"SENTRY_DSN_PARAMETER", "SECRETS_SSM_PATH", "DATABASE_SCHEMA_REVISION"} & set(
        variables
    )
    # Swagger UI's and ReDoc's files come from fastapi-offline (api/docs.py): the layer needs it.
    requirements = (REPO / "layers/common/requirements.txt").read_text()
    assert re.search(r"^fastapi-offline==", requirements, re.M | re.I)


# ----------------------------------------------------------------------------- alerting

# What each namespace's alarms may use: metric names and the dimension sets they publish.
ALARM_METRICS = {
    "AWS/ApiGateway": ({"Count", "4xx", "5xx", "Latency"}, [{"ApiId", "Stage"}]),
    "AWS/Lambda": ({"Errors", "Throttles", "Duration"}, [{"FunctionName"}]),
    "AWS/SQS": (
        {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"},
        [{"QueueName"}],
    ),
    "AWS/DynamoDB": (
        {"ThrottledRequests", "ReadThrottleEvents", "WriteThrottleEvents"},
        [{"TableName"}, {"TableName", "GlobalSecondaryIndexName"}, {"TableName", "Operation"}],
    ),
    # Our own EMF metrics, by the Powertools service (function) that publishes them.
    "MySoulmate": ({"PerfRegressedScreens"}, [{"service"}]),
}
# Dimension -> the resource type whose Ref (or GetAtt) names it.
DIMENSION_TARGETS = {
    "FunctionName": ("Ref", "AWS::Serverless::Function"),
    "ApiId": ("Ref", "AWS::Serverless::HttpApi"),
    "QueueName": ("QueueName", "AWS::SQS::Queue"),
    "TableName": ("Ref", "AWS::DynamoDB::Table"),
}
DYNAMODB_OPERATIONS = {"BatchWriteItem", "TransactWriteItems", "PutItem", "Query", "GetItem"}


def alarm_metrics(alarm: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], str]]:
    """(namespace, metric, {dimension: value}, statistic) of every metric an alarm reads."""
    props = alarm["Properties"]
    if "MetricName" in props:
        specs = [(props, props.get("ExtendedStatistic") or props.get("Statistic"))]
    else:
        specs = [
            (q["MetricStat"]["Metric"], q["MetricStat"]["Stat"])
            for q in props["Metrics"]
            if "MetricStat" in q
        ]
    return [
        (
            spec["Namespace"],
            spec["MetricName"],
            {d["Name"]: d["Value"] for d in spec.get("Dimensions", [])},
            stat,
        )
        for spec, stat in specs
    ]


def alarms_of(stack: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources_of(stack, "AWS::CloudWatch::Alarm")


def target_of(dimension: str, value: Any) -> str:
    """The logical id a dimension value refers to, checking the way it refers to it."""
    how, _ = DIMENSION_TARGETS[dimension]
    if how == "Ref":
        assert set(value) == {"Ref"}, (dimension, value)
        return str(value["Ref"])
    logical_id, attribute = value["Fn::GetAtt"]
    assert attribute == how, (dimension, value)
    return str(logical_id)


def test_every_alarm_watches_a_resource_of_this_stack(stack: dict[str, Any]) -> None:
    resources = stack["Resources"]
    alarms = alarms_of(stack)
    assert alarms
    for alarm_id, alarm in alarms.items():
        metrics = alarm_metrics(alarm)
        assert metrics, alarm_id
        for namespace, metric, dimensions, stat in metrics:
            names, dimension_sets = ALARM_METRICS[namespace]
            assert metric in names, (alarm_id, namespace, metric)
            assert set(dimensions) in dimension_sets, (alarm_id, dimensions)
            assert stat, alarm_id
            for dimension, value in dimensions.items():
                if dimension == "Stage":
                    # The HTTP API serves its $default stage only (no StageName set).
                    assert value == "$default", alarm_id
                    assert "StageName" not in resources["HttpApi"]["Properties"]
                elif dimension == "GlobalSecondaryIndexName":
                    table = resources[target_of("TableName", dimensions["TableName"])]
                    indexes = table["Properties"]["GlobalSecondaryIndexes"]
                    assert value in {i["IndexName"] for i in indexes}, alarm_id
                elif dimension == "Operation":
                    assert value in DYNAMODB_OPERATIONS, alarm_id
                elif dimension == "service":
                    services = {
                        function["Properties"]["Environment"]["Variables"].get(
                            "POWERTOOLS_SERVICE_NAME"
                        )
                        for function in resources.values()
                        if function["Type"] == "AWS::Serverless::Function"
                        and "Environment" in function["Properties"]
                    }
                    assert value in services, (alarm_id, value)
                else:
                    logical_id = target_of(dimension, value)
                    assert logical_id in resources, f"{alarm_id}: {logical_id} is not created"
                    assert resources[logical_id]["Type"] == DIMENSION_TARGETS[dimension][1]
        # Metric math: one expression is the alarm's, and it uses only ids defined here.
        queries = alarm["Properties"].get("Metrics", [])
        if queries:
            ids = {q["Id"] for q in queries}
            assert len(ids) == len(queries), alarm_id
            returned = [q for q in queries if q["ReturnData"]]
            assert len(returned) == 1, alarm_id
            assert "Expression" in returned[0], alarm_id
            expression = returned[0]["Expression"]
            text = expression if isinstance(expression, str) else expression["Fn::Sub"][0]
            used = set(re.findall(r"\b([a-z][a-z0-9_]*)\b(?!\s*\()", text))
            assert used <= ids, (alarm_id, used - ids)
            assert ids - {returned[0]["Id"]} <= used, f"{alarm_id}: unused metrics"


def test_every_alarm_notifies_the_alerts_topic_on_alarm_and_ok(
    template: dict[str, Any], stack: dict[str, Any]
) -> None:
    topic = template["Resources"]["AlertsTopic"]
    assert topic["Type"] == "AWS::SNS::Topic"
    assert topic["Properties"]["TopicName"] == {"Fn::Sub": "${AWS::StackName}-alerts"}
    names = set()
    for alarm_id, alarm in alarms_of(stack).items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [{"Ref": "AlertsTopic"}], alarm_id
        assert props["OKActions"] == [{"Ref": "AlertsTopic"}], alarm_id
        assert "InsufficientDataActions" not in props, alarm_id
        name = props["AlarmName"]["Fn::Sub"]
        assert name.startswith("${AWS::StackName}-"), alarm_id
        names.add(name)
        assert props["TreatMissingData"] in {"notBreaching", "ignore"}, alarm_id
        assert props.get("AlarmDescription"), alarm_id
    assert len(names) == len(alarms_of(stack)), "alarm names must be unique"


def test_alarm_coverage(stack: dict[str, Any]) -> None:
    """The signals the issue asks for, each alarmed once, on the backend where it applies."""
    aurora = "DatabaseCluster" in stack["Resources"]
    watched: dict[tuple[str, str, str], list[str]] = {}
    for alarm_id, alarm in alarms_of(stack).items():
        for namespace, metric, dimensions, _ in alarm_metrics(alarm):
            for dimension, value in dimensions.items():
                if dimension in DIMENSION_TARGETS:
                    target = target_of(dimension, value)
                    watched.setdefault((namespace, metric, target), []).append(alarm_id)
    # Errors and Throttles of every function the stack creates, alerts and migrate included.
    for name in function_names(stack):
        for metric in ("Errors", "Throttles"):
            assert len(watched.get(("AWS/Lambda", metric, name), [])) == 1, (name, metric)
    assert ("AWS/Lambda", "Duration", "ConsumerFunction") in watched
    for metric in ("5xx", "Count", "Latency"):
        assert ("AWS/ApiGateway", metric, "HttpApi") in watched, metric
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "EventsDeadLetterQueue") in watched
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage", "EventsQueue") in watched
    dynamodb = {k for k in watched if k[0] == "AWS/DynamoDB"}
    if aurora:
        assert dynamodb == set(), "no function uses the table with aurora"
    else:
        assert {m for _, m, _ in dynamodb} == {
            "ThrottledRequests",
            "ReadThrottleEvents",
            "WriteThrottleEvents",
        }
    alarms = alarms_of(stack)
    latency = alarms["ApiLatencyAlarm"]["Properties"]
    assert latency["ExtendedStatistic"] == "p95"
    rate = alarms["Api5xxRateAlarm"]["Properties"]
    (expression,) = [q for q in rate["Metrics"] if q["ReturnData"]]
    assert "100 *" in expression["Expression"], "a rate in percent, not a count"
    dlq = alarms["EventsDeadLetterQueueAlarm"]["Properties"]
    assert (dlq["ComparisonOperator"], dlq["Threshold"]) == ("GreaterThanThreshold", 0)
    age = alarms["EventsQueueAgeAlarm"]["Properties"]
    assert (age["ComparisonOperator"], age["Threshold"]) == ("GreaterThanThreshold", 300)


def test_consumer_duration_alarm_follows_the_consumer_timeout(template: dict[str, Any]) -> None:
    """Threshold and Timeout come from one mapping entry: changing it moves both."""
    consumer = effective_function(template, "ConsumerFunction")
    source = {"Fn::FindInMap": ["Consumer", "Limits", "TimeoutSeconds"]}
    assert consumer["Timeout"] == source
    props = template["Resources"]["ConsumerDurationAlarm"]["Properties"]
    (share,) = [q for q in props["Metrics"] if q["ReturnData"]]
    text, variables = share["Expression"]["Fn::Sub"]
    assert variables == {"TimeoutSeconds": source}
    assert props["Threshold"] == {"Fn::FindInMap": ["Consumer", "Limits", "DurationAlarmPercent"]}
    (slowest,) = [q for q in props["Metrics"] if not q["ReturnData"]]
    assert slowest["MetricStat"]["Stat"] == "Maximum"
    # The expression is the slowest invocation's share of the timeout, in percent.
    assert text == "100 * slowest / (${TimeoutSeconds} * 1000)"
    timeout, percent = mapped(template, source), mapped(template, props["Threshold"])
    assert timeout == 30
    assert 50 <= percent < 100


def test_dynamodb_throttle_alarm_only_with_the_dynamodb_backend(template: dict[str, Any]) -> None:
    alarm = template["Resources"]["EventsTableThrottlesAlarm"]
    assert alarm["Condition"] == "UseDynamoDB"
    assert template["Resources"]["MigrateErrorsAlarm"]["Condition"] == "UseAurora"
    assert template["Resources"]["MigrateThrottlesAlarm"]["Condition"] == "UseAurora"
    # Throttle metrics are only emitted when something was throttled: missing -> 0.
    (total,) = [q for q in alarm["Properties"]["Metrics"] if q["ReturnData"]]
    others = [q["Id"] for q in alarm["Properties"]["Metrics"] if not q["ReturnData"]]
    assert all(f"FILL({i}, 0)" in total["Expression"] for i in others)
    assert len(alarm["Properties"]["Metrics"]) <= 10


def _substitute(text: str, variables: dict[str, Any], template: dict[str, Any]) -> str:
    """Fill a !Sub string with fake values the way CloudFormation fills real ones; fail on a
    name that is neither a variable, a pseudo parameter nor a resource of the template."""
    resources = template["Resources"]

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables:
            fake = variables[name]
            return str(mapped(template, fake) if isinstance(fake, dict) else fake)
        if name.startswith("AWS::"):
            return {"AWS::Region": "us-east-1", "AWS::StackName": "mysoulmate-test"}[name]
        logical_id, _, attribute = name.partition(".")
        assert logical_id in resources, f"the dashboard names {logical_id}, not in the template"
        assert "Condition" not in resources[logical_id], f"{logical_id} may not exist"
        return f"fake-{logical_id}-{attribute or 'ref'}"

    return re.sub(r"\$\{([^!}][^}]*)\}", value, text)


def test_dashboard_body_is_json_after_substitution_and_shows_the_alarmed_signals(
    template: dict[str, Any], dynamodb_stack: dict[str, Any]
) -> None:
    dashboard = template["Resources"]["OperationsDashboard"]
    assert dashboard["Type"] == "AWS::CloudWatch::Dashboard"
    props = dashboard["Properties"]
    assert props["DashboardName"] == {"Fn::Sub": "${AWS::StackName}-operations"}
    text, variables = props["DashboardBody"]["Fn::Sub"]
    body = json.loads(_substitute(text, variables, template))
    widgets = body["widgets"]
    shown: set[tuple[str, str, str]] = set()
    for widget in widgets:
        assert {"type", "x", "y", "width", "height", "properties"} <= set(widget)
        assert widget["x"] + widget["width"] <= 24
        if widget["type"] != "metric":
            continue
        assert widget["properties"]["region"] == "us-east-1"
        for row in widget["properties"]["metrics"]:
            if isinstance(row[-1], dict):
                row = row[:-1]
            if len(row) < 2:
                continue  # an expression
            namespace, metric, *dimensions = row
            for value in dimensions[1::2]:
                shown.add((namespace, metric, value))
    # Every alarmed metric of the stack, with the same resource, is on a graph.
    for alarm_id, alarm in alarms_of(dynamodb_stack).items():
        for namespace, metric, dimensions, _ in alarm_metrics(alarm):
            for dimension, value in dimensions.items():
                if dimension in DIMENSION_TARGETS:
                    target = target_of(dimension, value)
                    how = DIMENSION_TARGETS[dimension][0]
                    fake = f"fake-{target}-{'ref' if how == 'Ref' else how}"
                    assert (namespace, metric, fake) in shown, (alarm_id, metric)
    # The alarm widget lists every alarm that always exists.
    (alarm_widget,) = [w for w in widgets if w["type"] == "alarm"]
    unconditional = {
        k
        for k, v in template["Resources"].items()
        if v["Type"] == "AWS::CloudWatch::Alarm" and "Condition" not in v
    }
    assert set(alarm_widget["properties"]["alarms"]) == {f"fake-{k}-Arn" for k in unconditional}


def test_alerts_function_subscribes_to_the_alerts_topic(
    template: dict[str, Any], stack: dict[str, Any]
) -> None:
    props = template["Resources"]["AlertsFunction"]["Properties"]
    assert props["CodeUri"] == "functions/alerts/"
    (event,) = props["Events"].values()
    assert event == {"Type": "SNS", "Properties": {"Topic": {"Ref": "AlertsTopic"}}}
    assert not {"SnapStart", "AutoPublishAlias"} & set(props), "not latency-sensitive"
    fn = effective_function(stack, "AlertsFunction")
    assert "VpcConfig" not in fn, "Slack is on the internet; the database VPC has no way out"
    assert fn["Policies"] == OUTSIDE_VPC_POLICIES["AlertsFunction"]
    # Slack retries (mysoulmate.runtime.alerts) end well before the function's timeout.
    from mysoulmate.runtime.alerts import DELIVERY_BUDGET_SECONDS, TIMEOUT_MARGIN_SECONDS

    assert fn["Timeout"] >= DELIVERY_BUDGET_SECONDS + TIMEOUT_MARGIN_SECONDS
    assert template["Outputs"]["AlertsTopicArn"]["Value"] == {"Ref": "AlertsTopic"}
    assert (REPO / "functions/alerts/app.py").is_file()


# ----------------------------------------------------------------------------- aurora

DATABASE_TYPES = ("AWS::RDS::", "AWS::EC2::", "AWS::SecretsManager::", "AWS::CloudFormation::")


def _ingress(stack: dict[str, Any], group: str) -> set[tuple[str, int, int, str]]:
    """(protocol, from, to, source) of every ingress rule of a security group, inline or not."""
    resources = stack["Resources"]
    rules = list(resources[group]["Properties"].get("SecurityGroupIngress", []))
    rules += [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress"
        and r["Properties"]["GroupId"] == {"Ref": group}
    ]
    return {
        (
            r["IpProtocol"],
            r["FromPort"],
            r["ToPort"],
            r.get("SourceSecurityGroupId", {}).get("Ref") or r.get("CidrIp") or "?",
        )
        for r in rules
    }


def _egress(stack: dict[str, Any], group: str) -> set[tuple[str, int, int, str]]:
    resources = stack["Resources"]
    rules = list(resources[group]["Properties"].get("SecurityGroupEgress", []))
    rules += [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::EC2::SecurityGroupEgress"
        and r["Properties"]["GroupId"] == {"Ref": group}
    ]
    return {
        (
            r["IpProtocol"],
            r["FromPort"],
            r["ToPort"],
            r.get("DestinationSecurityGroupId", {}).get("Ref") or r.get("CidrIp") or "?",
        )
        for r in rules
    }


NOTHING = ("icmp", 252, 86, "255.255.255.255/32")  # the rule that replaces default allow-all


def test_dynamodb_stack_creates_no_database_network_or_migration(
    dynamodb_stack: dict[str, Any], translated: dict[str, Any]
) -> None:
    for stack in (dynamodb_stack, resolved(translated, DEPLOY_PARAMETERS)):
        found = [
            (k, v["Type"])
            for k, v in stack["Resources"].items()
            if v["Type"].startswith(DATABASE_TYPES)
        ]
        assert found == []
        assert not {"DatabaseProxyEndpoint", "DatabaseSecretArn"} & set(stack["Outputs"])
    assert set(function_names(dynamodb_stack)) == set(FUNCTIONS)
    for name in FUNCTIONS:
        fn = effective_function(dynamodb_stack, name)
        assert "VpcConfig" not in fn, name
        variables = fn["Environment"]["Variables"]
        # Exactly the environment the DynamoDB stack had before StorageBackend=aurora existed.
        assert set(variables) == REQUIRED_ENV | FUNCTION_ENV.get(name, set()), name
        assert variables["STORAGE_BACKEND"] == "dynamodb"


def test_aurora_cluster_is_an_encrypted_serverless_v2_postgresql(
    template: dict[str, Any], aurora_stack: dict[str, Any]
) -> None:
    resources = aurora_stack["Resources"]
    cluster = resources["DatabaseCluster"]
    props = cluster["Properties"]
    assert props["Engine"] == "aurora-postgresql"
    assert "EngineMode" not in props, "provisioned mode with db.serverless = Serverless v2"
    version = template["Parameters"]["DatabaseEngineVersion"]
    assert props["EngineVersion"] == {"Ref": "DatabaseEngineVersion"}
    assert int(version["Default"].split(".")[0]) >= 16
    assert props["ServerlessV2ScalingConfiguration"] == {
        "MinCapacity": {"Ref": "DatabaseMinCapacity"},
        "MaxCapacity": {"Ref": "DatabaseMaxCapacity"},
    }
    params = template["Parameters"]
    assert params["DatabaseMinCapacity"]["MinValue"] >= 0
    assert params["DatabaseMaxCapacity"]["MaxValue"] <= 256
    assert params["DatabaseMinCapacity"]["Default"] <= params["DatabaseMaxCapacity"]["Default"]
    assert props["StorageEncrypted"] is True
    assert props["DatabaseName"] == "mysoulmate"
    assert props["BackupRetentionPeriod"] == {"Ref": "DatabaseBackupRetentionDays"}
    assert 1 <= params["DatabaseBackupRetentionDays"]["Default"] <= 35
    assert "PubliclyAccessible" not in props
    assert cluster["DeletionPolicy"] == cluster["UpdateReplacePolicy"] == "Snapshot"
    (instance,) = resources_of(aurora_stack, "AWS::RDS::DBInstance").values()
    assert instance["Properties"]["DBInstanceClass"] == "db.serverless"
    assert instance["Properties"]["DBClusterIdentifier"] == {"Ref": "DatabaseCluster"}
    assert instance["Properties"]["Engine"] == "aurora-postgresql"
    assert instance["Properties"]["PubliclyAccessible"] is False


@pytest.mark.parametrize(
    ("stage", "protected"), [("dev", False), ("staging", False), ("prod", True)]
)
def test_aurora_deletion_protection_only_in_prod(
    template: dict[str, Any], stage: str, protected: bool
) -> None:
    stack = resolved(template, {"StorageBackend": "aurora", "Stage": stage})
    assert stack["Resources"]["DatabaseCluster"]["Properties"]["DeletionProtection"] is protected


def test_aurora_credentials_live_in_secrets_manager_and_nowhere_else(
    template: dict[str, Any], aurora_stack: dict[str, Any]
) -> None:
    resources = aurora_stack["Resources"]
    secret = resources["DatabaseSecret"]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    generate = secret["Properties"]["GenerateSecretString"]
    assert generate["GenerateStringKey"] == "password"
    assert generate["PasswordLength"] >= 32
    assert set(json.loads(generate["SecretStringTemplate"])) == {"username"}
    assert "SecretString" not in secret["Properties"]
    props = resources["DatabaseCluster"]["Properties"]
    for key, field_ in (("MasterUsername", "username"), ("MasterUserPassword", "password")):
        assert props[key] == {
            "Fn::Sub": f"{{{{resolve:secretsmanager:${{DatabaseSecret}}:SecretString:{field_}}}}}"
        }
    attachment = resources["DatabaseSecretAttachment"]["Properties"]
    assert attachment == {
        "SecretId": {"Ref": "DatabaseSecret"},
        "TargetId": {"Ref": "DatabaseCluster"},
        "TargetType": "AWS::RDS::DBCluster",
    }

    # No literal password anywhere: every value under a password-like key is a dynamic
    # reference to Secrets Manager. Two settings merely mention passwords: the generator's
    # length and the proxy's client authentication method.
    settings_only = {"PasswordLength", "ClientPasswordAuthType"}

    def scan(node: Any, path: str) -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for key, value in node.items():
                if re.search(r"passw", key, re.I) and key not in settings_only:
                    yield f"{path}.{key}", value
                yield from scan(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                yield from scan(item, f"{path}[{i}]")

    found = dict(scan(template, ""))
    assert set(found) == {".Resources.DatabaseCluster.Properties.MasterUserPassword"}
    for where, value in found.items():
        assert "{{resolve:secretsmanager:" in json.dumps(value), f"{where}: {value}"
    assert not any(looks_secret(name) for name in template["Parameters"])
    raw = TEMPLATE_PATH.read_text()
    assert "ManageMasterUserPassword" not in raw  # one secret, the one the proxy reads


def test_aurora_proxy_requires_tls_and_can_read_only_the_secret(
    aurora_stack: dict[str, Any],
) -> None:
    resources = aurora_stack["Resources"]
    proxy = resources["DatabaseProxy"]["Properties"]
    assert proxy["EngineFamily"] == "POSTGRESQL"
    assert proxy["RequireTLS"] is True
    assert proxy["Auth"] == [
        {
            "AuthScheme": "SECRETS",
            "SecretArn": {"Ref": "DatabaseSecret"},
            "IAMAuth": "DISABLED",
            "ClientPasswordAuthType": "POSTGRES_SCRAM_SHA_256",
        }
    ]
    assert proxy["VpcSubnetIds"] == [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}]
    assert proxy["VpcSecurityGroupIds"] == [{"Ref": "ProxySecurityGroup"}]
    role = resources[proxy["RoleArn"]["Fn::GetAtt"][0]]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "rds.amazonaws.com"}
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert statements == [
        {
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": {"Ref": "DatabaseSecret"},
        }
    ]
    target = resources["DatabaseProxyTargetGroup"]
    assert target["Properties"]["DBProxyName"] == {"Ref": "DatabaseProxy"}
    assert target["Properties"]["TargetGroupName"] == "default"
    assert target["Properties"]["DBClusterIdentifiers"] == [{"Ref": "DatabaseCluster"}]
    assert target["DependsOn"] == "DatabaseInstance"


def test_aurora_functions_connect_through_the_proxy_from_the_private_subnets(
    aurora_stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mysoulmate.core.settings import load_settings

    cluster = aurora_stack["Resources"]["DatabaseCluster"]["Properties"]
    assert set(function_names(aurora_stack)) == set(FUNCTIONS) | set(AURORA_FUNCTIONS)
    for name in set(FUNCTIONS) - DATABASE_FUNCTIONS:
        assert "VpcConfig" not in effective_function(aurora_stack, name), name
    for name in DATABASE_FUNCTIONS | set(AURORA_FUNCTIONS):
        fn = effective_function(aurora_stack, name)
        assert fn["VpcConfig"] == {
            "SecurityGroupIds": [{"Ref": "FunctionSecurityGroup"}],
            "SubnetIds": [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}],
        }, name
        variables = fn["Environment"]["Variables"]
        assert variables["STORAGE_BACKEND"] == "postgres", name
        assert variables["DATABASE_HOST"] == {"Fn::GetAtt": ["DatabaseProxy", "Endpoint"]}, name
        assert variables["DATABASE_NAME"] == cluster["DatabaseName"], name
        assert variables["DATABASE_SECRET_ARN"] == {"Ref": "DatabaseSecret"}, name
        assert not {"DATABASE_URL", "DATABASE_PORT"} & set(variables), name
        # The application accepts the configuration as deployed (intrinsics filled in).
        deployed = {
            "STAGE": "dev",
            "APP_VERSION": "1.2.3",
            "LOG_LEVEL": "INFO",
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "EVENTS_TABLE": "mysoulmate-dev-EventsTable-1",
            "CORS_ALLOW_ORIGINS": "https://a.example",
            "SECRETS_SSM_PATH": "/mysoulmate/dev/",
            "DATABASE_SCHEMA_REVISION": "0001",
            "DATABASE_HOST": "mysoulmate-dev-db.proxy-abc.us-east-1.rds.amazonaws.com",
            "DATABASE_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf",
            "EVENTS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q",
            "SENTRY_TRACES_SAMPLE_RATE": "0",
            "PERF_REGRESSION_THRESHOLD": "0.2",
            "REPORTS_BUCKET": "mysoulmate-dev-reportsbucket-1",
            "REPORT_LOCALE": "en",
            "EVENTS_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q-dlq",
        }
        for key, value in variables.items():
            assert isinstance(value, str) or key in deployed, key
            monkeypatch.setenv(key, deployed.get(key, value))
        settings = load_settings()
        assert settings.storage_backend == "postgres"
        assert (settings.database_host, settings.database_port) == (deployed["DATABASE_HOST"], 5432)
        assert settings.database_name == "mysoulmate"
        for key in variables:
            monkeypatch.delenv(key)


def test_aurora_network_is_private_in_two_availability_zones(aurora_stack: dict[str, Any]) -> None:
    resources = aurora_stack["Resources"]
    assert resources["Vpc"]["Properties"]["EnableDnsSupport"] is True
    assert resources["Vpc"]["Properties"]["EnableDnsHostnames"] is True
    zones = []
    for name in ("PrivateSubnetA", "PrivateSubnetB"):
        props = resources[name]["Properties"]
        assert props["VpcId"] == {"Ref": "Vpc"}
        assert props["MapPublicIpOnLaunch"] is False
        zones.append(props["AvailabilityZone"])
    assert zones == [
        {"Fn::Select": [0, {"Fn::GetAZs": ""}]},
        {"Fn::Select": [1, {"Fn::GetAZs": ""}]},
    ]
    # No way to the internet: no gateway, no NAT, no routes beyond the local one and S3's.
    types = {v["Type"] for v in resources.values()}
    assert not types & {
        "AWS::EC2::InternetGateway",
        "AWS::EC2::NatGateway",
        "AWS::EC2::Route",
        "AWS::EC2::EIP",
    }
    associations = {
        r["Properties"]["SubnetId"]["Ref"]: r["Properties"]["RouteTableId"]
        for r in resources_of(aurora_stack, "AWS::EC2::SubnetRouteTableAssociation").values()
    }
    assert associations == {
        "PrivateSubnetA": {"Ref": "PrivateRouteTable"},
        "PrivateSubnetB": {"Ref": "PrivateRouteTable"},
    }
    subnet_group = resources["DatabaseSubnetGroup"]["Properties"]["SubnetIds"]
    assert subnet_group == [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}]


def test_aurora_security_groups_allow_postgres_only_from_functions_via_the_proxy(
    aurora_stack: dict[str, Any],
) -> None:
    assert _ingress(aurora_stack, "FunctionSecurityGroup") == set()
    assert _ingress(aurora_stack, "ProxySecurityGroup") == {
        ("tcp", 5432, 5432, "FunctionSecurityGroup")
    }
    assert _ingress(aurora_stack, "DatabaseSecurityGroup") == {
        ("tcp", 5432, 5432, "ProxySecurityGroup")
    }
    assert _ingress(aurora_stack, "EndpointSecurityGroup") == {
        ("tcp", 443, 443, "FunctionSecurityGroup"),
        ("tcp", 443, 443, "ProxySecurityGroup"),
    }
    # Nothing accepts traffic from an address range, only from a group of this stack.
    for group in resources_of(aurora_stack, "AWS::EC2::SecurityGroup"):
        assert all(not source[0].isdigit() for *_, source in _ingress(aurora_stack, group))
    assert _egress(aurora_stack, "FunctionSecurityGroup") == {
        ("tcp", 5432, 5432, "ProxySecurityGroup"),
        ("tcp", 443, 443, "0.0.0.0/0"),  # endpoints only: the route table has no other exit
    }
    assert _egress(aurora_stack, "ProxySecurityGroup") == {
        ("tcp", 5432, 5432, "DatabaseSecurityGroup"),
        ("tcp", 443, 443, "EndpointSecurityGroup"),
    }
    assert _egress(aurora_stack, "DatabaseSecurityGroup") == {NOTHING}
    assert _egress(aurora_stack, "EndpointSecurityGroup") == {NOTHING}
    cluster = aurora_stack["Resources"]["DatabaseCluster"]["Properties"]
    assert cluster["VpcSecurityGroupIds"] == [{"Ref": "DatabaseSecurityGroup"}]
    assert cluster["Port"] == 5432


def test_aurora_vpc_endpoints_cover_what_the_functions_call(aurora_stack: dict[str, Any]) -> None:
    """SQS (analytics sends, health reads attributes) and Secrets Manager (credentials) as
    interface endpoints; S3 as a gateway for the custom resource's response only."""
    endpoints = {
        v["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[1]: v["Properties"]
        for v in resources_of(aurora_stack, "AWS::EC2::VPCEndpoint").values()
    }
    assert set(endpoints) == {"sqs", "secretsmanager", "s3"}
    for service in ("sqs", "secretsmanager"):
        props = endpoints[service]
        assert props["ServiceName"] == {"Fn::Sub": f"com.amazonaws.${{AWS::Region}}.{service}"}
        assert props["VpcEndpointType"] == "Interface"
        assert props["PrivateDnsEnabled"] is True, "the SDKs' default hostnames must resolve to it"
        assert props["SubnetIds"] == [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}]
        assert props["SecurityGroupIds"] == [{"Ref": "EndpointSecurityGroup"}]
    s3 = endpoints["s3"]
    assert s3["VpcEndpointType"] == "Gateway"
    assert s3["RouteTableIds"] == [{"Ref": "PrivateRouteTable"}]
    (statement,) = s3["PolicyDocument"]["Statement"]
    assert statement["Action"] == "s3:PutObject"
    assert statement["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:s3:::cloudformation-custom-resource-response-*/*"
    }


def test_aurora_migrations_run_as_a_custom_resource_before_the_functions_update(
    aurora_stack: dict[str, Any], translated_aurora: dict[str, Any]
) -> None:
    resources = aurora_stack["Resources"]
    migration = resources["DatabaseMigration"]
    assert migration["Type"] == "AWS::CloudFormation::CustomResource"
    props = migration["Properties"]
    assert props["ServiceToken"] == {"Fn::GetAtt": ["MigrateFunction", "Arn"]}
    assert {
        "DatabaseInstance",
        "DatabaseProxyTargetGroup",
        "SecretsManagerEndpoint",
        "S3GatewayEndpoint",
        "PrivateSubnetARouteTable",
        "PrivateSubnetBRouteTable",
    } <= set(migration["DependsOn"])
    # Re-run whenever the code that holds the migrations, the release or the knob changes.
    assert props["CommonLayer"] == {"Ref": "CommonLayer"}
    assert props["AppVersion"] == {"Ref": "AppVersion"}
    assert props["MigrationsVersion"] == {"Ref": "MigrationsVersion"}
    migrate = effective_function(aurora_stack, "MigrateFunction")
    assert migrate["CodeUri"] == "functions/migrate/"
    assert migrate["Timeout"] >= 300
    assert props["ServiceTimeout"] > migrate["Timeout"]
    assert not {"Events", "SnapStart", "AutoPublishAlias"} & set(migrate)
    # The other functions refer to the migration's result, so CloudFormation updates them
    # (and SnapStart runs their init) only after the schema is there.
    for name in DATABASE_FUNCTIONS:
        variables = effective_function(aurora_stack, name)["Environment"]["Variables"]
        assert variables["DATABASE_SCHEMA_REVISION"] == {
            "Fn::GetAtt": ["DatabaseMigration", "Revision"]
        }, name
    # After translation: the custom resource names the current layer version.
    layer = translated_aurora["Resources"]["DatabaseMigration"]["Properties"]["CommonLayer"]
    assert translated_aurora["Resources"][layer["Ref"]]["Type"] == "AWS::Lambda::LayerVersion"


def test_a_new_layer_reruns_migrations_and_publishes_new_function_versions(
    template: dict[str, Any],
) -> None:
    """The layer holds both the migrations and the application: a release that changes only
    the layer must still migrate and move the `live` aliases to new versions."""
    values = {**DEPLOY_PARAMETERS, "StorageBackend": "aurora"}

    def deploy(layer_key: str) -> dict[str, Any]:
        sam = copy.deepcopy(template)
        sam["Resources"]["CommonLayer"]["Properties"]["ContentUri"] = (
            f"s3://{ARTIFACT_BUCKET}/{layer_key}"
        )
        for own in ("ReportsLayer", "MigrationsLayer"):
            sam["Resources"][own]["Properties"]["ContentUri"] = f"s3://{ARTIFACT_BUCKET}/{own}.zip"
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
            from samtranslator.translator.transform import transform

            for name, resource in sam["Resources"].items():
                if resource["Type"] == "AWS::Serverless::Function":
                    resource["Properties"]["CodeUri"] = f"s3://{ARTIFACT_BUCKET}/{name}.zip"
            parameters: dict[str, Any] = {
                k: values.get(k, v.get("Default")) for k, v in sam["Parameters"].items()
            }
            for k, v in sam["Parameters"].items():
                if v["Type"] == "CommaDelimitedList":
                    parameters[k] = str(parameters[k]).split(",")
            result: dict[str, Any] = transform(sam, parameters, StaticManagedPolicies())
        return result

    before, after = deploy("layer-1.zip"), deploy("layer-2.zip")
    migration = [
        d["Resources"]["DatabaseMigration"]["Properties"]["CommonLayer"] for d in (before, after)
    ]
    assert migration[0] != migration[1]
    for alias in (f"{name}Aliaslive" for name in sorted(API_FUNCTIONS)):
        versions = [d["Resources"][alias]["Properties"]["FunctionVersion"] for d in (before, after)]
        assert versions[0] != versions[1], f"{alias} would keep serving the old layer"


def test_aurora_outputs(template: dict[str, Any], aurora_stack: dict[str, Any]) -> None:
    outputs = aurora_stack["Outputs"]
    assert outputs["DatabaseProxyEndpoint"]["Value"] == {
        "Fn::GetAtt": ["DatabaseProxy", "Endpoint"]
    }
    assert outputs["DatabaseSecretArn"]["Value"] == {"Ref": "DatabaseSecret"}
    for name in ("DatabaseProxyEndpoint", "DatabaseSecretArn"):
        assert template["Outputs"][name]["Condition"] == "UseAurora"


def test_condition_resolver_decides_like_cloudformation(template: dict[str, Any]) -> None:
    """The assertions above are only as good as this: check it on known cases."""
    assert condition_values(template, {}) == {
        "IsProd": False,
        "UseAurora": False,
        "UseDynamoDB": True,
        "HasSlackWebhookParameter": False,
        "HasSentry": False,
        "ForwardToMixpanel": False,
        "HasMixpanelApiSecret": False,
        "HasMixpanelGdpr": False,
        "ForwardToGa4": False,
        "AuroraEgress": False,
        "HasMediaSigningSecret": False,
    }
    assert condition_values(
        template,
        {
            "StorageBackend": "aurora",
            "Stage": "prod",
            "SlackWebhookParameter": "/a",
            "SentryDsnParameter": "/mysoulmate/prod/sentry-dsn",
        },
    ) == {
        "IsProd": True,
        "UseAurora": True,
        "UseDynamoDB": False,
        "HasSlackWebhookParameter": True,
        "HasSentry": True,
        "ForwardToMixpanel": False,
        "HasMixpanelApiSecret": False,
        "HasMixpanelGdpr": False,
        "ForwardToGa4": False,
        "AuroraEgress": False,
        "HasMediaSigningSecret": False,
    }
    # GA4 needs both its values; the egress exists only with aurora and a provider.
    only_ga4 = condition_values(template, {"StorageBackend": "aurora", "GaMeasurementId": "G-X1"})
    assert (only_ga4["ForwardToGa4"], only_ga4["AuroraEgress"]) == (False, False)
    both = condition_values(template, {"StorageBackend": "aurora", **FORWARDING})
    assert all(both[c] for c in ("ForwardToMixpanel", "HasMixpanelGdpr", "ForwardToGa4"))
    assert both["AuroraEgress"] is True
    assert condition_values(template, FORWARDING)["AuroraEgress"] is False
    node = {
        "a": {"Fn::If": ["UseAurora", "x", {"Ref": "AWS::NoValue"}]},
        "b": [{"Fn::If": ["UseAurora", {"Ref": "AWS::NoValue"}, 1]}, 2],
    }
    assert _resolve(node, {"UseAurora": True}) == {"a": "x", "b": [2]}
    assert _resolve(node, {"UseAurora": False}) == {"b": [1, 2]}


# ----------------------------------------------------------------------------- samconfig.toml


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_samconfig_environment_deploys_this_template(template: dict[str, Any], env: str) -> None:
    """Each environment's overrides, parsed the way `sam deploy` parses them, fit the template."""
    from samcli.cli.types import CfnParameterOverridesType
    from samcli.lib.config.samconfig import SamConfig

    config = SamConfig(config_dir=str(SAMCONFIG_PATH.parent), filename=SAMCONFIG_PATH.name)
    deploy = config.get_all(["deploy"], "parameters", env)
    assert deploy["stack_name"] == f"mysoulmate-{env}"
    assert deploy["resolve_s3"] is True
    assert set(deploy["capabilities"]) == {"CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"}
    assert deploy["confirm_changeset"] is (env == "prod")

    overrides = CfnParameterOverridesType().convert(deploy["parameter_overrides"], None, None)
    params = template["Parameters"]
    assert set(overrides) <= set(params), f"unknown parameters: {set(overrides) - set(params)}"
    required = {k for k, v in params.items() if "Default" not in v}
    assert required <= set(overrides), f"{env} lacks {required - set(overrides)}"
    assert overrides["Stage"] == env
    assert overrides["SecretsSsmPath"] == f"/mysoulmate/{env}/"
    for key, value in overrides.items():
        spec = params[key]
        if "AllowedValues" in spec:
            assert value in [str(v) for v in spec["AllowedValues"]], (key, value)
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], value), (key, value)
        if "MinValue" in spec:
            assert float(value) >= spec["MinValue"], (key, value)
        assert not looks_secret(key), f"{key}: secrets do not belong in samconfig.toml"


# ----------------------------------------------------------------------------- translate + moto

ARTIFACT_BUCKET = "mysoulmate-test-artifacts"
STACK = "mysoulmate-test"
DEPLOY_PARAMETERS = {
    "Stage": "staging",
    "JwtIssuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example",
    "JwtAudience": "client-one,client-two",
    "CorsAllowOrigins": "https://a.example,https://b.example",
    "LogRetentionDays": "14",
    "SecretsSsmPath": "/mysoulmate/staging/",
    "AppVersion": "1.2.3",
}
# Managed policies SAM attaches to the roles it generates. Anything else is a finding.
ALLOWED_MANAGED_POLICIES = {
    name: f"arn:aws:iam::aws:policy/{path}{name}"
    for name, path in (
        ("AWSLambdaBasicExecutionRole", "service-role/"),
        ("AWSXrayWriteOnlyAccess", ""),
        ("AWSLambdaSQSQueueExecutionRole", "service-role/"),
        # Attached to every function: SAM sees VpcConfig (an !If) and cannot evaluate it.
        ("AWSLambdaVPCAccessExecutionRole", "service-role/"),
    )
}
# Resource types moto's CloudFormation cannot create (moto 5.x), and what depends on them. The
# stack is created without them; everything they configure is asserted on the translated
# template instead (test_translated_template_wiring):
#   AWS::ApiGatewayV2::Api / ::Stage  -> the HTTP API and its $default stage;
#   AWS::Lambda::Alias                -> the `live` aliases (AutoPublishAlias);
#   AWS::Lambda::Permission           -> API Gateway's invoke permissions, which name the alias
#                                        and the API (moto would fail with KeyError FunctionName).
#   AWS::CloudWatch::Alarm            -> the alarms (test_alarm_* on the template);
#   AWS::CloudWatch::Dashboard        -> moto could create it, but it names the alarms'
#                                        ARNs (test_dashboard_body_is_json_after_substitution);
#   AWS::SNS::Subscription            -> AlertsTopic -> alerts function (wiring test above);
#   AWS::S3::BucketPolicy, AWS::SQS::QueuePolicy, AWS::Scheduler::Schedule -> the reports
#                                        bucket's TLS-only policy, the reports DLQ's policy and
#                                        the report schedules (test_template_reports.py).
MOTO_DROPPABLE_TYPES = {
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Stage",
    "AWS::Lambda::Alias",
    "AWS::Lambda::Permission",
    "AWS::CloudWatch::Alarm",
    "AWS::CloudWatch::Dashboard",
    "AWS::SNS::Subscription",
    "AWS::S3::BucketPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::Scheduler::Schedule",
}


class StaticManagedPolicies:
    """samtranslator's ManagedPolicyLoader without IAM: the managed policies SAM itself uses."""

    def load(self) -> dict[str, str]:
        return dict(ALLOWED_MANAGED_POLICIES)


def translate(template: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """SAM -> CloudFormation, offline, as `sam deploy` would after `sam package`."""
    from samtranslator.translator.transform import transform

    sam = copy.deepcopy(template)
    for logical_id, resource in sam["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://{ARTIFACT_BUCKET}/{logical_id}.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            resource["Properties"]["ContentUri"] = f"s3://{ARTIFACT_BUCKET}/{logical_id}.zip"
    # CloudFormation hands the transform every parameter, defaults included, lists split.
    parameter_values: dict[str, Any] = {}
    for name, spec in sam["Parameters"].items():
        value = values.get(name, spec.get("Default"))
        if value is None:
            continue
        if spec["Type"] == "CommaDelimitedList":
            value = value if isinstance(value, list) else str(value).split(",")
        parameter_values[name] = value
    result: dict[str, Any] = transform(sam, parameter_values, StaticManagedPolicies())
    return result


def _translate(template: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # samtranslator asks boto3 for a region
        return translate(template, values)


@pytest.fixture(scope="module")
def translated(template: dict[str, Any]) -> dict[str, Any]:
    """SAM's output for the default backend (dynamodb), conditions still in place."""
    return _translate(template, DEPLOY_PARAMETERS)


@pytest.fixture(scope="module")
def translated_aurora(template: dict[str, Any]) -> dict[str, Any]:
    """SAM's output with StorageBackend=aurora, resolved as CloudFormation would create it."""
    values = {**DEPLOY_PARAMETERS, "StorageBackend": "aurora"}
    return resolved(_translate(template, values), values)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cfn_lint_passes_on_translated_template(
    translated: dict[str, Any], tmp_path: Path, backend: str
) -> None:
    """Some rules only see plain CloudFormation: e.g. E2530 (SnapStart runtime and region) is not
    applied to AWS::Serverless::Function, so the translated template is linted too."""
    # With --parameters, cfn-lint evaluates the conditions for those values. It cannot take a
    # CommaDelimitedList there (E2900 "not of type 'array'"), so the required parameters get
    # defaults in this copy and only StorageBackend is passed.
    cfn = copy.deepcopy(translated)
    for name in ("JwtIssuer", "JwtAudience"):
        cfn["Parameters"][name]["Default"] = DEPLOY_PARAMETERS[name]
    path = tmp_path / "translated.json"
    path.write_text(json.dumps(cfn, indent=1))
    result = run_tool(
        [console_script("cfn-lint"), str(path), "--parameters", f"StorageBackend={backend}"]
    )
    assert result.returncode == 0, f"cfn-lint (translated):\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_translated_template_wiring(translated: dict[str, Any], backend: str) -> None:
    """What moto cannot create, checked on SAM's output: the API definition, aliases, roles."""
    values = {**DEPLOY_PARAMETERS, "StorageBackend": backend}
    resources = resolved(translated, values)["Resources"]
    assert not [k for k, v in resources.items() if v["Type"].startswith("AWS::Serverless::")]

    body = resources["HttpApi"]["Properties"]["Body"]
    scheme = body["components"]["securitySchemes"]["JwtAuthorizer"][
        "x-amazon-apigateway-authorizer"
    ]
    assert scheme["type"] == "jwt"
    assert scheme["identitySource"] == "$request.header.Authorization"
    assert body["x-amazon-apigateway-cors"]["allowOrigins"] == [
        "https://a.example",
        "https://b.example",
    ]
    for (method, path), (function, authorizer) in expected_routes().items():
        operation = body["paths"][path][method.lower()]
        assert operation["security"] == [{authorizer or "JwtAuthorizer": []}], path
        # API Gateway must invoke the alias: SnapStart never applies to $LATEST.
        uri = operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
        assert f"${{{function}Aliaslive}}" in uri, (path, uri)
    stage = resources["HttpApiApiGatewayDefaultStage"]["Properties"]
    assert stage["StageName"] == "$default"
    assert stage["AccessLogSettings"]["DestinationArn"] == {
        "Fn::GetAtt": ["HttpApiAccessLogGroup", "Arn"]
    }

    names = [n for n in (*FUNCTIONS, *AURORA_FUNCTIONS) if n in resources]
    assert ("MigrateFunction" in names) is (backend == "aurora")
    for name in names:
        fn = resources[name]["Properties"]
        assert fn["Architectures"] == ["arm64"]
        assert fn["TracingConfig"] == {"Mode": "Active"}
        layer_ref, *own = refs_in(fn["Layers"])
        assert layer_ref.startswith("CommonLayer"), layer_ref
        assert [ref.rstrip("0123456789abcdef") for ref in own] == [
            ref["Ref"] for ref in OWN_LAYERS.get(name, [])
        ], name
        assert ("SnapStart" in fn) is (name in API_FUNCTIONS)
        in_vpc = backend == "aurora" and name in DATABASE_FUNCTIONS | set(AURORA_FUNCTIONS)
        assert ("VpcConfig" in fn) is in_vpc, name
        role = resources[f"{name}Role"]["Properties"]
        managed = set(role["ManagedPolicyArns"])
        allowed = set(ALLOWED_MANAGED_POLICIES.values())
        if name != "ConsumerFunction":
            allowed.discard(ALLOWED_MANAGED_POLICIES["AWSLambdaSQSQueueExecutionRole"])
        assert managed <= allowed, f"{name}: unexpected managed policies {managed - allowed}"
        statements = [
            s for policy in role.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]
        ]
        # Without the VPC, the network-interface rights of the managed policy are denied.
        vpc_access = ALLOWED_MANAGED_POLICIES["AWSLambdaVPCAccessExecutionRole"]
        denied = [s for s in statements if s["Effect"] == "Deny"]
        if vpc_access in managed and not in_vpc:
            assert denied == [NO_ENI_STATEMENT], name
        else:
            assert denied == [], name
        for statement in statements:
            resources_ = statement["Resource"]
            resources_ = resources_ if isinstance(resources_, list) else [resources_]
            if "*" in resources_ and statement["Effect"] == "Allow":
                # The one action AWS offers no resource-level permission for.
                assert statement["Action"] == ["ssm:DescribeParameters"], (name, statement)
    for alias in (f"{name}Aliaslive" for name in sorted(API_FUNCTIONS)):
        assert resources[alias]["Type"] == "AWS::Lambda::Alias"
    # Alarm notifications reach the alerts function: an SNS subscription and the permission.
    (subscription,) = resources_of({"Resources": resources}, "AWS::SNS::Subscription").values()
    assert subscription["Properties"]["TopicArn"] == {"Ref": "AlertsTopic"}
    assert subscription["Properties"]["Protocol"] == "lambda"
    assert subscription["Properties"]["Endpoint"] == {"Fn::GetAtt": ["AlertsFunction", "Arn"]}
    sns_permissions = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Permission"
        and r["Properties"]["Principal"] == "sns.amazonaws.com"
    ]
    assert sns_permissions == [
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Ref": "AlertsFunction"},
            "Principal": "sns.amazonaws.com",
            "SourceArn": {"Ref": "AlertsTopic"},
        }
    ]


def _drop_unsupported_by_moto(cfn: dict[str, Any]) -> list[tuple[str, str]]:
    """Remove resource types moto cannot create, and everything referring to them."""
    from moto.cloudformation.parsing import get_model_map

    supported = set(get_model_map())
    resources = cfn["Resources"]
    dropped = {k for k, v in resources.items() if v["Type"] not in supported}
    grew = True
    while grew:
        dependants = {
            k for k, v in resources.items() if k not in dropped and set(refs_in(v)) & dropped
        }
        grew = bool(dependants)
        dropped |= dependants
    report = sorted((k, resources[k]["Type"]) for k in dropped)
    for logical_id in dropped:
        del resources[logical_id]
    cfn["Outputs"] = {
        k: v for k, v in cfn.get("Outputs", {}).items() if not set(refs_in(v)) & dropped
    }
    return report


def _code_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return None\n")
    return buffer.getvalue()


def moto_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment a stack created in moto needs: fake credentials, one region, and no
    endpoint override."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


def test_translated_stack_creates_in_moto(
    translated: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto import mock_aws
    from mysoulmate.core.settings import load_settings

    moto_environment(monkeypatch)
    # CloudFormation decides the conditions before creating anything; so does this test.
    cfn = resolved(translated, DEPLOY_PARAMETERS)
    dropped = _drop_unsupported_by_moto(cfn)
    dropped_types = {type_ for _, type_ in dropped}
    assert dropped_types <= MOTO_DROPPABLE_TYPES, f"moto cannot create {dropped}"
    # The core of the stack must never be among what is dropped.
    kept = set(cfn["Resources"])
    assert {"EventsQueue", "EventsDeadLetterQueue", "EventsTable", *FUNCTIONS} <= kept

    with mock_aws(), warnings.catch_warnings():
        # moto warns, and carries on, when it skips a resource type it cannot create.
        warnings.filterwarnings("error", message=".*not supported by moto.*")
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=ARTIFACT_BUCKET)
        # What `sam package` would upload: translate() pointed CodeUri/ContentUri here.
        for logical_id in (*FUNCTIONS, "CommonLayer"):
            s3.put_object(Bucket=ARTIFACT_BUCKET, Key=f"{logical_id}.zip", Body=_code_zip())

        cloudformation = boto3.client("cloudformation")
        cloudformation.create_stack(
            StackName=STACK,
            TemplateBody=json.dumps(cfn),
            # moto only splits CommaDelimitedList values that are passed in, never defaults,
            # so every list parameter is passed explicitly.
            Parameters=[
                {"ParameterKey": k, "ParameterValue": v} for k, v in DEPLOY_PARAMETERS.items()
            ],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        stack = cloudformation.describe_stacks(StackName=STACK)["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}

        # ---- queues
        sqs = boto3.client("sqs")
        queue_url = outputs["EventsQueueUrl"]
        dlq_url = outputs["EventsDeadLetterQueueUrl"]
        assert queue_url.endswith(f"/{STACK}-events")
        queue = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
        dlq = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"]
        assert queue["QueueArn"] == outputs["EventsQueueArn"]
        redrive = json.loads(queue["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
        assert int(redrive["maxReceiveCount"]) == 5
        assert queue["SqsManagedSseEnabled"] == "true"
        assert dlq["SqsManagedSseEnabled"] == "true"
        assert int(queue["MessageRetentionPeriod"]) == 345600
        assert int(dlq["MessageRetentionPeriod"]) == 1209600

        # ---- functions, as created
        lambda_ = boto3.client("lambda")
        configs = {
            name: lambda_.get_function_configuration(FunctionName=outputs[f"{name}Name"])
            for name in FUNCTIONS
        }
        consumer_timeout = configs["ConsumerFunction"]["Timeout"]
        assert consumer_timeout == 30
        assert int(queue["VisibilityTimeout"]) >= 6 * consumer_timeout

        # ---- table
        dynamodb = boto3.client("dynamodb")
        table = dynamodb.describe_table(TableName=outputs["EventsTableName"])["Table"]
        assert table["KeySchema"] == [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ]
        (gsi,) = table["GlobalSecondaryIndexes"]
        assert gsi["IndexName"] == "ByUserTime"
        assert gsi["KeySchema"] == [
            {"AttributeName": "gsi1pk", "KeyType": "HASH"},
            {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
        ]
        assert gsi["Projection"]["ProjectionType"] == "ALL"
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert table["StreamSpecification"] == {
            "StreamEnabled": True,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        # (moto's CloudFormation ignores TTL and PITR specs; test_events_table checks them.)

        # ---- the consumer drains the queue, reporting partial failures
        (mapping,) = lambda_.list_event_source_mappings(
            FunctionName=outputs["ConsumerFunctionName"]
        )["EventSourceMappings"]
        assert mapping["EventSourceArn"] == queue["QueueArn"]
        assert mapping["BatchSize"] == 100
        assert mapping["MaximumBatchingWindowInSeconds"] == 5
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["ScalingConfig"] == {"MaximumConcurrency": 10}

        # ---- every function is wired to the real resources and the code accepts its settings
        origins = ["https://a.example", "https://b.example"]
        for name, short in FUNCTIONS.items():
            env = configs[name]["Environment"]["Variables"]
            assert env["EVENTS_TABLE"] == outputs["EventsTableName"], name
            assert env["EVENTS_QUEUE_URL"] == queue_url, name
            assert env["STAGE"] == "staging", name
            assert env["APP_VERSION"] == "1.2.3", name
            assert env["CORS_ALLOW_ORIGINS"] == ",".join(origins), name
            assert env["POWERTOOLS_SERVICE_NAME"] == short, name
            assert ("SECRETS_SSM_PATH" in env) is (name == "AnalyticsFunction"), name
            for key, value in env.items():
                monkeypatch.setenv(key, value)
            settings = load_settings()
            assert settings.stage == "staging"
            assert (settings.storage_backend, settings.queue_backend) == ("dynamodb", "sqs")
            assert settings.auth_mode == "apigateway"
            assert settings.events_table == outputs["EventsTableName"]
            assert settings.events_queue_url == queue_url
            assert settings.cors_allow_origins == origins
            assert settings.event_retention_days == 730
            for key in env:
                monkeypatch.delenv(key)

        # ---- log groups with the configured retention
        logs = boto3.client("logs")
        groups = {g["logGroupName"]: g for g in logs.describe_log_groups()["logGroups"]}
        for short in FUNCTIONS.values():
            assert groups[f"/aws/lambda/{STACK}-{short}"]["retentionInDays"] == 14
        assert groups[f"/aws/vendedlogs/apigateway/{STACK}-http-api"]["retentionInDays"] == 14

        # ---- roles: resolved inline policies name this stack's resources only
        iam = boto3.client("iam")
        table_arn = table["TableArn"]
        documents: dict[str, list[dict[str, Any]]] = {}
        for name in FUNCTIONS:
            role_name = configs[name]["Role"].rsplit("/", 1)[1]
            statements = []
            for policy_name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
                document = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)
                statements += _as_document(document["PolicyDocument"])["Statement"]
            documents[name] = statements
        grants = {name: _grants(statements) for name, statements in documents.items()}
        assert grants["HealthFunction"] == {
            ("dynamodb:DescribeTable", table_arn),
            ("sqs:GetQueueAttributes", queue["QueueArn"]),
        }
        assert grants["I18nFunction"] == set(), "i18n reads nothing but its layer"
        assert grants["DocsFunction"] == set(), "docs reads nothing but its layer"
        # alerts: the one webhook parameter (derived from SecretsSsmPath), nothing else.
        assert configs["AlertsFunction"]["Environment"]["Variables"]["SLACK_WEBHOOK_PARAMETER"] == (
            "/mysoulmate/staging/slack-webhook-url"
        )
        webhook_arn = (
            "arn:aws:ssm:us-east-1:123456789012:parameter/mysoulmate/staging/slack-webhook-url"
        )
        assert {r for a, r in grants["AlertsFunction"] if a != "ssm:DescribeParameters"} == {
            webhook_arn
        }
        assert ("ssm:GetParameter", webhook_arn) in grants["AlertsFunction"]
        # The topic every alarm notifies exists.
        topics = boto3.client("sns").list_topics()["Topics"]
        assert {"TopicArn": outputs["AlertsTopicArn"]} in topics
        assert outputs["AlertsTopicArn"].endswith(f":{STACK}-alerts")
        analytics = grants["AnalyticsFunction"]
        assert ("sqs:SendMessage*", queue["QueueArn"]) in analytics
        assert ("dynamodb:Query", f"{table_arn}/index/*") in analytics
        # Writes: the GDPR ones only (erasure, audit), on the table itself, never an index.
        writes = {
            (a, r)
            for a, r in analytics
            if a.startswith("dynamodb:")
            and a.removeprefix("dynamodb:").startswith(("Put", "Update", "Delete", "BatchWrite"))
        }
        assert writes == {(a, table_arn) for a in GDPR_WRITE_ACTIONS}
        ssm_arn = "arn:aws:ssm:us-east-1:123456789012:parameter/mysoulmate/staging/*"
        assert {r for a, r in analytics if a.startswith("ssm:Get")} == {ssm_arn}
        consumer = grants["ConsumerFunction"]
        assert ("dynamodb:BatchWriteItem", table_arn) in consumer
        assert {r for _, r in consumer} <= {table_arn, f"{table_arn}/index/*"}
        for name, pairs in grants.items():
            wildcards = {a for a, r in pairs if r == "*"}
            assert wildcards <= {"ssm:DescribeParameters"}, (name, wildcards)
            assert not {a for a, _ in pairs if a.startswith(("secretsmanager:", "ec2:"))}, name
            # SAM's VPC-access managed policy is offset by an explicit deny on this stack.
            assert {a for a, _ in _grants(documents[name], "Deny")} == set(
                NO_ENI_STATEMENT["Action"]
            ), name

    print(f"dropped for moto: {dropped}")


def _as_document(document: Any) -> dict[str, Any]:
    # moto returns the document as stored: a dict, JSON, or (from CloudFormation) a Python repr.
    if isinstance(document, dict):
        return document
    try:
        parsed: dict[str, Any] = json.loads(document)
    except json.JSONDecodeError:
        import ast

        parsed = ast.literal_eval(document)
    return parsed


def _grants(statements: list[dict[str, Any]], effect: str = "Allow") -> set[tuple[str, str]]:
    pairs = set()
    for statement in statements:
        assert statement["Effect"] in ("Allow", "Deny")
        if statement["Effect"] != effect:
            continue
        actions = statement["Action"]
        targets = statement["Resource"]
        for action in actions if isinstance(actions, list) else [actions]:
            for target in targets if isinstance(targets, list) else [targets]:
                pairs.add((action, target))
    return pairs


# ----------------------------------------------------------------------------- sam build

_NETWORK_ERRORS = (
    "Temporary failure in name resolution",
    "Failed to establish a new connection",
    "Network is unreachable",
    "No route to host",
    "Connection refused",
)


def _python312_env(env: dict[str, str]) -> dict[str, str] | None:
    """An environment in which `python3.12` runs Python 3.12 (venv first, then pyenv)."""
    probe = ["-c", "import sys; sys.exit(sys.version_info[:2] != (3, 12))"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": False}
    exe = shutil.which("python3.12", path=env["PATH"])
    if exe and subprocess.run([exe, *probe], env=env, **quiet).returncode == 0:
        return env
    root = Path(env.get("PYENV_ROOT", Path.home() / ".pyenv"))
    versions = sorted(
        (p.name for p in (root / "versions").glob("3.12*") if p.name[5:].isdigit()),
        key=lambda v: int(v[5:]),
    )
    if exe and versions:
        with_pyenv = {**env, "PYENV_VERSION": versions[-1]}
        if subprocess.run([exe, *probe], env=with_pyenv, **quiet).returncode == 0:
            return with_pyenv
    return None


def _skip_or_fail(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sam_build(tmp_path: Path) -> None:
    env = _python312_env(tool_env())
    if env is None:
        _skip_or_fail(
            "sam build needs python3.12 (the Lambda runtime) on PATH; this venv runs "
            f"{sys.version.split()[0]} and no pyenv 3.12 was found"
        )
    build_dir = tmp_path / "build"
    started = time.monotonic()
    result = run_tool(
        [
            console_script("sam"),
            "build",
            "--template-file",
            str(TEMPLATE_PATH),
            "--build-dir",
            str(build_dir),
            "--no-cached",
            "--parallel",
        ],
        timeout=540,
        env=env,
    )
    elapsed = time.monotonic() - started
    print(f"sam build took {elapsed:.1f} s")
    output = result.stdout + result.stderr
    if result.returncode != 0 and any(marker in output for marker in _NETWORK_ERRORS):
        _skip_or_fail(f"sam build could not reach the package index:\n{output[-2000:]}")
    assert result.returncode == 0, f"sam build failed after {elapsed:.0f} s:\n{output[-4000:]}"

    layer = build_dir / "CommonLayer" / "python"
    assert (layer / "mysoulmate" / "__init__.py").is_file()
    assert (layer / "fastapi").is_dir()
    # The whole package ships, not a subset.
    source = REPO / "layers" / "common" / "mysoulmate"
    expected = {p.relative_to(source) for p in source.rglob("*.py") if "__pycache__" not in p.parts}
    built = {
        p.relative_to(layer / "mysoulmate")
        for p in (layer / "mysoulmate").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert expected == built
    # Package data too: the i18n function serves the catalogs straight from the layer.
    catalogs = layer / "mysoulmate" / "i18n" / "locales"
    assert sorted(p.name for p in catalogs.glob("*.json")) == sorted(
        f"{code}.json" for code in ("en", "fr", "es", "de", "it", "pt", "ja", "zh")
    )
    for catalog in catalogs.glob("*.json"):
        assert json.loads(catalog.read_text(encoding="utf-8")), catalog.name
    # Compiled dependencies are for Graviton (ELF e_machine 183 = AArch64), not the build host.
    shared_objects = list(layer.rglob("*.so"))
    assert shared_objects, "expected compiled wheels (pydantic_core) in the layer"
    # The SQL backends' user sets (storage/bitmap.py) need pyroaring's arm64 CPython 3.12 build.
    assert (layer / "pyroaring.cpython-312-aarch64-linux-gnu.so").is_file()
    for shared_object in shared_objects:
        with shared_object.open("rb") as handle:
            header = handle.read(20)
        assert header[:4] == b"\x7fELF", shared_object
        assert int.from_bytes(header[18:20], "little") == 183, f"{shared_object} is not aarch64"
    assert {"I18nFunction", "AlertsFunction", "DocsFunction"} <= set(FUNCTIONS)
    # The docs function serves Swagger UI's and ReDoc's files from the layer.
    assert (layer / "fastapi_offline" / "static" / "swagger-ui-bundle.js").is_file()
    for name in (*FUNCTIONS, *AURORA_FUNCTIONS):  # sam build builds conditional ones too
        function_dir = build_dir / name
        assert (function_dir / "app.py").is_file(), name
        assert (function_dir / "app.py").read_text() == (
            REPO / "functions" / {**FUNCTIONS, **AURORA_FUNCTIONS}[name] / "app.py"
        ).read_text(), name
        # Functions stay thin: dependencies come from the layer only.
        assert not list(function_dir.glob("*.dist-info")), name
    assert (build_dir / "template.yaml").is_file()
    # Lambda refuses a function whose code and layers unzip to more than 250 MB.
    sizes = {
        layer_id: sum(p.stat().st_size for p in (build_dir / layer_id).rglob("*") if p.is_file())
        for layer_id in ("CommonLayer", "ReportsLayer", "MigrationsLayer")
    }
    print({k: f"{v / 2**20:.0f} MiB" for k, v in sizes.items()})
    for name in (*FUNCTIONS, *AURORA_FUNCTIONS, *FORWARDER_FUNCTIONS):
        layers = ["CommonLayer", *(ref["Ref"] for ref in OWN_LAYERS.get(name, []))]
        total = sum(sizes[layer_id] for layer_id in layers)
        assert total < 250 * 10**6, f"{name}: {total / 10**6:.0f} MB of layers"

"""Powertools' Logger, Metrics and Tracer, built here and nowhere else.

All are created on first use, not at import, so importing a module never costs a function
its cold start. Powertools reads POWERTOOLS_SERVICE_NAME, POWERTOOLS_LOG_LEVEL,
POWERTOOLS_LOGGER_SAMPLE_RATE (the share of invocations logged at DEBUG) and
POWERTOOLS_METRICS_NAMESPACE from the environment; the defaults below fit the laptop.

* **Logs** are JSON, one object a line, and pass through `redact_log` before they are
  written, with the rules of `scrubbing` (the same Sentry events get): Authorization/Cookie
  headers, bearer tokens and JWTs, passwords, secrets and API keys (by key, at any depth of
  the extras, and as ``password=…`` in text), emails, phone numbers and IP addresses never
  reach CloudWatch. The package's own stdlib loggers (``mysoulmate.*``) are
  routed through the same handler on Lambda, so they are JSON, correlated and redacted too.
* **Traces** (X-Ray) cost a cold start ≈ 55-90 ms of imports (aws_xray_sdk, wrapt), so the
  Tracer is only built where it can work: on Lambda (LAMBDA_TASK_ROOT set, not SAM local),
  unless POWERTOOLS_TRACE_DISABLED is true. Only botocore is patched (AWS calls become
  subsegments); never `patch_all`, which would import and wrap every supported library.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger, Metrics, Tracer
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

SERVICE_DEFAULT = "mysoulmate"
NAMESPACE_DEFAULT = "MySoulmate"
# Only AWS calls become subsegments; see the module docstring.
TRACED_MODULES = ("botocore",)
PACKAGE_LOGGER = "mysoulmate"

# -- redaction ------------------------------------------------------------------------------

# Keys Powertools itself writes: never personal, and their values (timestamps, ARNs, trace
# ids) must not be mistaken for phone numbers.
_STRUCTURAL_KEYS = frozenset(
    {
        "level",
        "location",
        "timestamp",
        "service",
        "cold_start",
        "function_name",
        "function_memory_size",
        "function_arn",
        "function_request_id",
        "function_version",
        "correlation_id",
        "xray_trace_id",
        "sampling_rate",
        "exception_name",
    }
)


def _plain(value: Any) -> Any:
    """``value`` as the JSON the formatter will write: anything that is not a str, number,
    bool, None, mapping or list becomes its str() (the formatter's json_default), so that
    text is redacted too (an exception in an extra, Powertools' stack-trace object)."""
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    return str(value)


def redact(value: Any) -> Any:
    """A copy of ``value`` safe to log: `scrubbing.scrub` (the rules Sentry events get),
    after turning whatever is not JSON into the text it would be written as."""
    from mysoulmate.observability.scrubbing import scrub

    return scrub(_plain(value))


def redact_log(log: Mapping[str, Any]) -> dict[str, Any]:
    """One structured log line, redacted; Powertools' own keys are left as they are."""
    from mysoulmate.observability.scrubbing import FILTERED, is_sensitive_key

    return {
        key: value
        if key in _STRUCTURAL_KEYS
        else FILTERED
        if is_sensitive_key(key)
        else redact(value)
        for key, value in log.items()
    }


@lru_cache(maxsize=1)
def _redacting_formatter_class() -> type[LambdaPowertoolsFormatter]:
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    class RedactingFormatter(LambdaPowertoolsFormatter):
        """Powertools' JSON formatter, with each finished log dict redacted before it is
        serialized: message, extras, appended keys and exception text alike."""

        def serialize(self, log: Any) -> str:
            return super().serialize(log=redact_log(log))

    return RedactingFormatter


# -- Logger, Metrics ------------------------------------------------------------------------


@lru_cache(maxsize=1)
def get_logger() -> Logger:
    from aws_lambda_powertools import Logger

    from mysoulmate.core import concurrency

    logger = Logger(
        service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE_DEFAULT),
        level=os.environ.get("POWERTOOLS_LOG_LEVEL", os.environ.get("LOG_LEVEL", "INFO")),
        # sampling_rate: Powertools reads POWERTOOLS_LOGGER_SAMPLE_RATE (validated in
        # settings) and re-draws the DEBUG sample on every warm invocation.
        logger_formatter=_redacting_formatter_class()(),
    )
    if concurrency.ON_LAMBDA:
        _route_package_loggers(logger)
    return logger


_routed: list[logging.Handler] = []  # what routing added, so undoing removes only that
_routed_propagate: list[bool] = []


def _route_package_loggers(logger: Logger) -> None:
    """Send the `mysoulmate.*` stdlib loggers (e.g. the i18n missing-key warning, whose key
    comes from the request) through the Powertools handler: JSON, the correlation id, and
    redaction, instead of Lambda's plain-text root handler."""
    package = logging.getLogger(PACKAGE_LOGGER)
    for handler in logger.handlers:
        if handler not in package.handlers:
            package.addHandler(handler)
            _routed.append(handler)
    if not _routed_propagate:
        _routed_propagate.append(package.propagate)
    package.propagate = False


def unroute_package_loggers() -> None:
    """Undo `_route_package_loggers` (tests that build more than one Logger per process).
    Only what routing added goes: with the default service name the package logger *is* a
    Powertools logger, whose own handler must stay."""
    package = logging.getLogger(PACKAGE_LOGGER)
    while _routed:
        package.removeHandler(_routed.pop())
    if _routed_propagate:
        package.propagate = _routed_propagate.pop()


@lru_cache(maxsize=1)
def get_metrics() -> Metrics:
    from aws_lambda_powertools import Metrics

    # Our signals print their own EMF documents (`signals`), so the set `log_metrics` flushes
    # is usually empty, which Powertools would report as a UserWarning on every cold start.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    return Metrics(
        namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE_DEFAULT),
        service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE_DEFAULT),
    )


# -- Tracer ---------------------------------------------------------------------------------


def tracing_enabled() -> bool:
    """Powertools' own rule, decided before anything is imported: on Lambda (the runtime
    sets LAMBDA_TASK_ROOT), not under SAM local or Chalice, POWERTOOLS_TRACE_DISABLED not
    true. A Tracer Powertools would disable still imports the X-Ray SDK: never build one."""
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower()
    if disabled in ("1", "true", "yes", "on", "y", "t"):
        return False
    if os.environ.get("AWS_SAM_LOCAL") or os.environ.get("AWS_CHALICE_CLI_MODE"):
        return False
    return bool(os.environ.get("LAMBDA_TASK_ROOT"))


@lru_cache(maxsize=1)
def get_tracer() -> Tracer | None:
    """The X-Ray tracer with botocore patched, or None when tracing is off."""
    if not tracing_enabled():
        return None
    from aws_lambda_powertools import Tracer

    return Tracer(
        service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE_DEFAULT),
        patch_modules=TRACED_MODULES,
    )


def subsegment(name: str) -> AbstractContextManager[Any]:
    """``with subsegment("## flush"):`` records a subsegment when tracing, else nothing."""
    tracer = get_tracer()
    if tracer is None:
        return nullcontext()
    return tracer.provider.in_subsegment(name=name)

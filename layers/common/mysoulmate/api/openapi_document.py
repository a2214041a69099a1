"""The API document as served: the canonical one (generated from the routers by
`api.openapi`, or as the package ships it) completed for this deployment.

Free of the routers on purpose: the docs function serves the shipped document, so its cold
start never pays for importing and introspecting every endpoint group.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mysoulmate.core.settings import Settings, get_settings

DOCUMENT = Path(__file__).with_name("openapi.json")  # docs/openapi.json links here


def with_deployment(spec: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The canonical document completed for this deployment: APP_VERSION, and the contact
    and servers of SUPPORT_EMAIL, API_BASE_URL, API_STAGING_URL, API_PRODUCTION_URL."""
    spec = {**spec, "info": {**spec["info"], "version": settings.app_version}}
    if settings.support_email:
        spec["info"]["contact"] = {"name": "MySoulmate support", "email": settings.support_email}
    servers = [
        {"url": url, "description": name}
        for name, url in (
            ("this deployment", settings.api_base_url),
            ("staging", settings.api_staging_url),
            ("production", settings.api_production_url),
        )
        if url
    ]
    if servers:
        spec["servers"] = servers
    return spec


def served_spec(*, shipped: bool) -> dict[str, Any]:
    """What `/api-docs.json` serves. ``shipped``: the document the package ships (a test keeps
    it equal to the generated one); otherwise generated from the routers, as they are now."""
    if shipped:
        canonical: dict[str, Any] = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    else:
        from mysoulmate.api.openapi import canonical_spec  # imports every router

        canonical = canonical_spec()
    return with_deployment(canonical, get_settings())


def dump(spec: dict[str, Any]) -> str:
    """The document as it is committed: stable key order, two-space indent, final newline."""
    return json.dumps(spec, indent=2, ensure_ascii=False) + "\n"

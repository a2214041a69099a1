"""Unknown query parameters of reads are refused (422), not ignored: a typo such as
`?limt=5` would otherwise silently give the default, and the API document says exactly what
is accepted. Writes take no query parameters and ignore them (SDKs and proxies may add some)."""

from __future__ import annotations

from fastapi import Request
from fastapi.routing import APIRoute

from mysoulmate.core.errors import InvalidRequestError

# Query names a route accepts by prefix rather than by name (i18n's `param.<name>`), and
# names every route accepts (`lang`: the response's language, core.request_context).
PREFIXED = ("param.",)
EVERYWHERE = frozenset({"lang"})


_CACHE = "_mysoulmate_query_names"  # kept on the route: computed once per route


def _accepted(route: APIRoute) -> frozenset[str]:
    """The query names of the route and of every dependency it pulls in."""
    known: frozenset[str] | None = getattr(route, _CACHE, None)
    if known is not None:
        return known
    names: set[str] = set()
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        names.update(param.alias for param in dependant.query_params)
        pending.extend(dependant.dependencies)
    accepted = frozenset(names)
    setattr(route, _CACHE, accepted)
    return accepted


READS = frozenset({"GET", "HEAD", "DELETE"})


async def reject_unknown_query(request: Request) -> None:
    if not request.scope.get("query_string") or request.scope["method"] not in READS:
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    accepted = _accepted(route)
    unknown = sorted(
        name
        for name in request.query_params
        if name not in accepted and name not in EVERYWHERE and not name.startswith(PREFIXED)
    )
    if unknown:
        raise InvalidRequestError(
            details=[{"field": name, "type": "extra_forbidden"} for name in unknown],
            fields=", ".join(unknown),
        )

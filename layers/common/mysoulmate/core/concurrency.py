"""Running blocking adapter calls from async routes.

On Lambda a container serves one request at a time, so a thread hop only adds latency;
everywhere else blocking I/O must leave the event loop free for other requests.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

ON_LAMBDA = "AWS_LAMBDA_FUNCTION_NAME" in os.environ


async def run_blocking(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    if ON_LAMBDA:
        return func(*args, **kwargs)
    # Imported here: the consumer reads ON_LAMBDA and must not load anyio at cold start.
    # anyio's thread pool is the one Starlette's run_in_threadpool uses, without importing
    # the web framework into the layers below it.
    import functools

    from anyio import to_thread

    return await to_thread.run_sync(functools.partial(func, *args, **kwargs))

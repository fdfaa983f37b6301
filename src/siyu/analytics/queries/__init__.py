"""Insight queries: a registry from ``kind`` to its runner, and one function that runs any of them.

``run_query({"kind": "trends", ...})`` validates the body against the kind's
typed query, runs its runner on the configured engine, and caches the answer
until the data changes (the engine's ``version``). The API endpoint and
``siyu query`` both call it.
"""

from __future__ import annotations

import importlib
import threading
from collections import OrderedDict
from typing import Any

from pydantic import ValidationError

from siyu.analytics.engines import Engine, get_engine
from siyu.analytics.queries.base import QueryBase, QueryError, ResultBase, Runner

REGISTRY: dict[str, type[Runner]] = {}
# One module per kind; each registers its runner when imported.
RUNNER_MODULES = ("trends", "retention", "funnel", "repurchase", "ltv", "rfm", "lifecycle", "overview")
CACHE_SIZE = 256

_cache: OrderedDict[tuple, ResultBase] = OrderedDict()
_cache_lock = threading.Lock()


def register(cls: type[Runner]) -> type[Runner]:
    """Class decorator: make ``cls`` the runner of ``cls.kind``."""
    REGISTRY[cls.kind] = cls
    return cls


def kinds() -> list[str]:
    return sorted(REGISTRY)


def parse_query(body: dict[str, Any] | QueryBase) -> QueryBase:
    """The typed query for a request body. Raises QueryError naming each bad field."""
    if isinstance(body, QueryBase):
        return body
    if not isinstance(body, dict):
        raise QueryError([{"field": "", "reason": "the query must be a JSON object"}])
    kind = body.get("kind")
    if kind not in REGISTRY:
        raise QueryError([{"field": "kind", "reason": f"unknown kind {kind!r}: use one of {', '.join(kinds())}"}])
    try:
        return REGISTRY[kind].query_model.model_validate(body)
    except ValidationError as exc:
        raise QueryError([
            {"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"].removeprefix("Value error, ")}
            for e in exc.errors()
        ]) from None


def run_query(body: dict[str, Any] | QueryBase, engine: Engine | None = None, *, use_cache: bool = True
              ) -> ResultBase:
    """Answer an insight query. Raises QueryError when the body is invalid."""
    query = parse_query(body)
    engine = engine or get_engine()
    key = (query.kind, query.model_dump_json(), engine.name, engine.version())
    if use_cache:
        with _cache_lock:
            hit = _cache.get(key)
            if hit is not None:
                _cache.move_to_end(key)
                return hit.model_copy(update={"cached": True})
    result = REGISTRY[query.kind](query, engine).run()
    with _cache_lock:
        _cache[key] = result
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return result


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def _load() -> None:
    for name in RUNNER_MODULES:
        importlib.import_module(f"{__name__}.{name}")


_load()

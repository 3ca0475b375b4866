"""What a collection did, for its item's ``method``: the AWS API operations it called (with call counts)
and the policy parameters it read.

Clients are watched through botocore's own ``before-call`` event (once per API call and page, not per
retry); the counts go to the collection running in the current thread, so clients shared by the threads
of one account (see :mod:`attestly.collectors.aws.batch`) still attribute each call to its collection.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

_local = threading.local()


def _on_call(model: Any = None, **_: Any) -> None:
    calls: dict[str, int] | None = getattr(_local, "calls", None)
    if calls is None or model is None:
        return
    service = model.service_model
    name = f"{service.signing_name or service.endpoint_prefix}:{model.name}"
    calls[name] = calls.get(name, 0) + 1


def watch(client: Any) -> Any:
    """Count ``client``'s API calls for the collection running in the calling thread (idempotent)."""
    events = getattr(getattr(client, "meta", None), "events", None)
    if events is not None:
        # First among the handlers of every operation: a handler that answers the call itself (botocore's
        # Stubber) ends the event, and the call must still be counted.
        events.register_first("before-call.*.*", _on_call, unique_id="attestly-method-calls")
    return client


class WatchedSession:
    """A session (or the batch's shared clients) whose ``client()`` hands out watched clients."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def client(self, *args: Any, **kwargs: Any) -> Any:
        return watch(self._session.client(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


@contextmanager
def recording_calls() -> Iterator[dict[str, int]]:
    """The API calls made in this thread inside the block, as ``{"<service>:<Operation>": count}``."""
    previous = getattr(_local, "calls", None)
    calls: dict[str, int] = {}
    _local.calls = calls
    try:
        yield calls
    finally:
        _local.calls = previous


class ReadParams(dict[str, Any]):
    """The collector's parameters, remembering which keys the collector read (its thresholds)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

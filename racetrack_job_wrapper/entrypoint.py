"""`JobEntrypoint`: the optional base class of a job, kept so that jobs written as its subclasses load unchanged.

Subclassing it is never required: a job is any class with `perform`. Each optional method
here returns the empty value that the server treats exactly as if the job did not define
the method at all (no webview, no examples, no extra endpoints, no gauges).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any
from wsgiref.types import WSGIApplication

# A WSGI app as typeshed types one (a Flask app is one), for jobs that annotate with this name.
WsgiApplication = WSGIApplication


class JobEntrypoint(ABC):
    """A job: `perform`, served at `POST /api/v1/perform`, is required; every other method is optional."""

    # No docstring: a subclass's undocumented `perform` would inherit it into the API docs.
    @abstractmethod
    def perform(self, *args: Any, **kwargs: Any) -> Any:  # any signature overrides it
        raise NotImplementedError

    def webview_app(self, base_url: str) -> Callable[..., Any] | None:
        """A WSGI or ASGI app mounted at `base_url` (`.../api/v1/webview`); None for no webview."""
        return None

    def docs_input_examples(self) -> dict[str, dict[str, Any]]:
        """Example inputs by endpoint path (`/perform`, `/explain`), shown in the API docs."""
        return {}

    def docs_input_example(self) -> dict[str, Any]:
        """Example input of `/perform`, shown in the API docs."""
        return {}

    def auxiliary_endpoints(self) -> dict[str, Callable[..., Any]]:
        """More `POST /api/v1/{path}` endpoints: path -> method called like `perform`."""
        return {}

    def static_endpoints(self) -> dict[str, str | tuple[str, str]]:
        """`GET /api/v1/{path}` endpoints serving a file or directory: path -> file, or (file, mime type)."""
        return {}

    def metrics(self) -> list[dict[str, Any]]:
        """Gauges exported at every scrape: dicts with `name`, `value`, optional `description` and `labels`."""
        return []

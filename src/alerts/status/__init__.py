"""The status page: what is watched and how it is doing, read-only, on the
operations endpoint (``ALERTS_HTTP_BIND``).

::

    view.py     reads the config and the store into a ``Snapshot`` (plain data)
    page.py     aiohttp routes ``/status`` and ``/status.json``, access rule, rendering
    redact.py   what of a shown URL is hidden (credentials, query strings)
    templates/  the Jinja2 template (autoescaped) and its stylesheet
"""

from alerts.status.page import PAGE_PATH, Access, access_for, add_routes, render_html
from alerts.status.view import Snapshot, SourceState, snapshot

__all__ = [
    "PAGE_PATH",
    "Access",
    "Snapshot",
    "SourceState",
    "access_for",
    "add_routes",
    "render_html",
    "snapshot",
]

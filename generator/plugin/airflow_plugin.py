"""The Airflow plugin: where the console is mounted and how it shows in Airflow's navigation.

Every Airflow process imports plugins (each task too), so this module imports only Airflow's plugin
base class: the console's FastAPI app is an ASGI callable that builds itself on its first request
(`LazyApp`), and that happens only in the api-server.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/datamesh"  # where the api-server mounts the console: pages, /api, /docs (OpenAPI)
APP_FACTORY = "generator.plugin.app:create_app"


class LazyApp:
    """An ASGI app standing in for the console's FastAPI app until a request needs it."""

    def __init__(self, factory: str = APP_FACTORY) -> None:
        self.factory = factory
        self._app: Any = None
        self._lock = threading.Lock()

    def _build(self) -> Any:
        with self._lock:
            if self._app is None:
                module, _, name = self.factory.partition(":")
                self._app = getattr(importlib.import_module(module), name)()
        return self._app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        app = self._app or self._build()
        await app(scope, receive, send)


class DatameshPlugin(AirflowPlugin):
    name = "datamesh"
    fastapi_apps = [  # noqa: RUF012 - Airflow reads these class attributes
        {"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "Data mesh catalog"},
    ]
    # Views inside Airflow's UI (each an iframe of a page the app serves; url_route is the UI's path).
    external_views = [  # noqa: RUF012
        {
            "name": "Data mesh",
            "href": f"{URL_PREFIX}/mesh",
            "url_route": "datamesh",
            "destination": "nav",
            "nav_top_level": True,
        },
        {
            "name": "Mesh compliance",
            "href": f"{URL_PREFIX}/compliance",
            "url_route": "datamesh-compliance",
            "destination": "nav",
            "category": "browse",
        },
        {  # a tab on every DAG's page: the product the DAG builds
            "name": "Data product",
            "href": f"{URL_PREFIX}/dags/{{DAG_ID}}",
            "url_route": "datamesh-product",
            "destination": "dag",
        },
    ]

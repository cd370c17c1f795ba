"""The API's Swagger UI with its own assets: FastAPI's default page loads them from a CDN (blank offline).

The same Swagger UI (5.x, which reads the OpenAPI 3.1 FastAPI writes) ships with flask-appbuilder,
which Airflow's FAB provider (a dependency of this project) installs: its script and stylesheet are
served from that package's folder, found without importing it. Nothing on the page is fetched from
outside the api-server.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from generator.errors import NotFound

router = APIRouter(include_in_schema=False)
ASSETS_PATH = "/static/swagger-ui"
# name served -> (path under flask-appbuilder's static/appbuilder, media type)
ASSETS = {
    "swagger-ui-bundle.js": ("js/swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "swagger-ui.css": ("css/swagger/swagger-ui.css", "text/css; charset=utf-8"),
}
# A one-colour square in the page itself: no request for an icon either.
FAVICON = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E"
    "%3Crect width='16' height='16' rx='3' fill='%23017cee'/%3E%3C/svg%3E"
)
CACHE = "public, max-age=86400"  # the files change only with the installed package


def assets_dir() -> Path | None:
    """flask-appbuilder's static folder, or None when the package is not installed."""
    spec = importlib.util.find_spec("flask_appbuilder")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "static" / "appbuilder"


@router.get("/docs", response_class=HTMLResponse)
def docs(request: Request) -> HTMLResponse:
    base = request.scope.get("root_path", "").rstrip("/")
    return get_swagger_ui_html(
        openapi_url=f"{base}{request.app.openapi_url}",
        title=f"{request.app.title} - API docs",
        swagger_js_url=f"{base}{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{base}{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=FAVICON,
        oauth2_redirect_url=None,
    )


@router.get(ASSETS_PATH + "/{name}")
def asset(name: str) -> FileResponse:
    found = ASSETS.get(name)
    folder = assets_dir()
    if found is None or folder is None or not (folder / found[0]).is_file():
        raise NotFound(
            f"no Swagger UI asset {name!r}: the page uses {', '.join(ASSETS)}, served from flask-appbuilder's "
            "static folder (installed with apache-airflow-providers-fab)"
        )
    return FileResponse(folder / found[0], media_type=found[1], headers={"Cache-Control": CACHE})

"""The console's FastAPI app: the catalog API (api.py) and the pages (pages.py), with OpenAPI docs.

Built by the plugin's LazyApp on the api-server's first request to /datamesh (never in a task).
Errors become answers a user can act on: an unknown product or output is 404, a bad query 400
(FastAPI's own 422 for a malformed parameter included), both with the message the CLI would print;
a page asked for without a login goes to Airflow's login page, the API answers 401.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from generator import __version__
from generator.errors import NotFound, UserError
from generator.plugin import api, pages
from generator.plugin.catalog_access import CatalogPool
from generator.warehouse.connection import Warehouse

DESCRIPTION = """The data mesh's catalog inside Airflow: products (search with the CLI's filters, the
card), lineage and impact, quality, compliance and run history, incidents, subscriptions, and each
product's dbt docs. Every route needs an Airflow login (the api-server's JWT cookie, or
`Authorization: Bearer <token>` from `POST /auth/token`); subscribing needs create rights on assets."""


def create_app(warehouse: Warehouse | None = None) -> FastAPI:
    app = FastAPI(
        title="datamesh catalog",
        version=__version__,
        description=DESCRIPTION,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    app.state.pool = CatalogPool(warehouse)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(UserError, _bad_request)
    app.add_exception_handler(RequestValidationError, _malformed)
    app.add_exception_handler(HTTPException, _http_error)
    return app


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(f"{pages.base_url(request)}/api")


def _answer(request: Request, status: int, message: str) -> Response:
    if _is_api(request):
        return JSONResponse({"detail": message}, status_code=status)
    html = pages.render(
        "message.html.j2", base=pages.base_url(request), title=f"{status}: cannot show this", message=message
    ).body
    return HTMLResponse(html, status_code=status)


async def _not_found(request: Request, exc: Exception) -> Response:
    return _answer(request, 404, str(exc))


async def _bad_request(request: Request, exc: Exception) -> Response:
    return _answer(request, 400, str(exc))


async def _malformed(request: Request, exc: Exception) -> Response:
    problems = [_problem(e) for e in exc.errors()]  # type: ignore[attr-defined]
    return _answer(request, 400, "malformed request: " + "; ".join(problems))


def _problem(error: dict[str, Any]) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()))
    return f"{where}: {error.get('msg')} (got {error.get('input')!r})"


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 401 and not _is_api(request):
        from airflow.api_fastapi.app import get_auth_manager

        login = get_auth_manager().get_url_login()
        return RedirectResponse(f"{login}?next={quote(str(request.url), safe='')}")
    if _is_api(request):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    return _answer(request, exc.status_code, str(exc.detail))

"""The API documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), from assets
vendored under ``hie/api/static/`` (origin and licences: ``hie/api/static/ORIGIN.md``), so they
work on a closed hospital network and load no script from another host into the node's origin.

Swagger UI's online validator badge is switched off (it would send the OpenAPI document to an
outside service).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = "/docs/assets"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"


def add_docs_routes(app: FastAPI) -> None:
    openapi_url = app.openapi_url or "/openapi.json"
    title = app.title

    app.mount(ASSETS, StaticFiles(directory=STATIC), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{title} — API",
            swagger_js_url=f"{ASSETS}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/swagger-ui/favicon-32x32.png",
            oauth2_redirect_url=OAUTH2_REDIRECT,
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(OAUTH2_REDIRECT, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url, title=f"{title} — API",
            redoc_js_url=f"{ASSETS}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )

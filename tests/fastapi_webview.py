"""A FastAPI webview job for tests/test_webview.py, kept apart so FastAPI is imported only where used.

No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at run time.
"""

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel


class Item(BaseModel):
    name: str
    count: int = 1


def create_app() -> FastAPI:
    """Routes on `/`, as FastAPI apps do; links are built from the scope's root_path."""
    app = FastAPI()

    @app.get('/')
    def index(request: Request):
        return {'path': request.url.path, 'root_path': request.scope['root_path'], 'base_url': str(request.base_url)}

    @app.get('/page', response_class=HTMLResponse)
    def page(request: Request):
        return f'<a href="{request.scope["root_path"]}/items/1">one</a>'

    @app.get('/items/{x}')
    def item(x: str, request: Request):
        return {'x': x, 'path': request.url.path}

    @app.post('/items')
    def create(item: Item):
        return {'created': item.name, 'count': item.count}

    return app


class FastAPIJob:
    def perform(self) -> str:
        return 'fastapi'

    def webview_app(self, base_url: str) -> FastAPI:
        return create_app()

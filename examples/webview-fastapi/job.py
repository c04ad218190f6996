"""A FastAPI webview: an ASGI app with a Jinja2 template, a JSON endpoint and the job's static/ folder."""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at run time.
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel


class Greeting(BaseModel):
    name: str
    times: int = 1


class Job:
    def perform(self, name: str = 'world') -> str:
        """Greet someone."""
        return f'Hello, {name}!'

    def webview_app(self, base_url: str):
        """An ASGI app: mounted at base_url, it routes on '/' as any FastAPI app does."""
        # FastAPI's own docs pages would load Swagger UI from a CDN; the job's /docs documents perform.
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        templates = Jinja2Templates(directory='templates')

        @app.get('/', response_class=HTMLResponse)
        def index(request: Request):
            # root_path is the mount as the request reached it (with or without /pub/job/...),
            # so links built from it work both ways; request.url_for would drop the mount.
            return templates.TemplateResponse(request, 'index.html', {'root_path': request.scope['root_path']})

        @app.post('/greet')
        def greet(greeting: Greeting) -> dict:
            return {'greeting': ' '.join([self.perform(greeting.name)] * greeting.times)}

        return app

"""ASGI entry point for process managers: ``uvicorn --factory gateway.asgi:app_from_env``."""

from __future__ import annotations

from starlette.applications import Starlette

from gateway.app import create_app
from schemas.settings import settings_from_env


def app_from_env() -> Starlette:
    return create_app(settings_from_env())

"""ASGI entry point for process managers: ``uvicorn --factory trackgate.gateway.asgi:app_from_env``."""

from __future__ import annotations

from trackgate.gateway.app import create_app
from trackgate.gateway.ingest import IngestFront
from trackgate.schemas.settings import configure_logging, settings_from_env, tune_gc


def app_from_env() -> IngestFront:
    settings = settings_from_env().require()
    # each uvicorn worker process is started fresh: set up logging here, not only in the CLI
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    tune_gc()
    return app

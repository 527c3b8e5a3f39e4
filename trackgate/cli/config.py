"""Setup every command shares, done once per invocation (the shape of rq's ``rq/cli/helpers.py``).

``CliConfig`` reads the settings once, on first use (so ``--help`` needs no environment), and hands out
the URLs a command needs: ``cfg.database_url`` and ``cfg.redis_url`` are ``str``, or the command exits
with one line naming the variable to set. What the environment leaves unset is taken from the data
directory of a running ``trackgate up`` (its URLs, its generated secret key: :func:`discovered`).
``pass_cli_config`` gives a command the invocation's ``CliConfig`` (click's ``make_pass_decorator``: one
object in the context, created on first use).

``one_line_errors`` turns the failures a user can fix (a server that cannot be reached, a database that
was never migrated) into one line that says what to do, instead of a traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import click
import msgspec
import psycopg
import redis

from trackgate.schemas.destinations import SecretKeyMissing
from trackgate.schemas.settings import (
    MissingSetting,
    ServerSettings,
    Settings,
    configure_logging,
    settings_from_env,
)
from trackgate.state import read_secret_key, read_state

_FIND_THEM = (
    "or run `trackgate up`, which starts embedded servers for the URLs that are unset (other commands"
    " find a running `up` by its data directory: run them in the same directory, or set"
    " TRACKGATE_DATA_DIR)"
)


LIMIT = click.IntRange(1, 1_000_000)
"""Every ``--limit``: how many rows a listing prints at most."""


class MissingConfig(click.ClickException):
    """A setting the command needs is unset: one line, and the usage-error exit status (2)."""

    exit_code = 2


class CliConfig:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = env
        self._overrides: dict[str, Any] = {}
        self._settings: Settings | None = None
        self._logging = False
        self.discover = True
        """Fill the unset URLs and secret key from a running ``up``'s data directory (``up`` itself
        turns it off: it is the one that writes them)."""
        self.secret_key_in_data_dir = False
        """Whether the secret key is the data directory's (``TRACKGATE_SECRET_KEY`` being unset)."""

    def override(self, **values: Any) -> None:
        """Command-line options that win over the environment (``None``: not given)."""
        self._overrides.update({name: value for name, value in values.items() if value is not None})
        self._settings = None

    @property
    def settings(self) -> Settings:
        """The settings, read from ``TRACKGATE_*`` once; a bad value is a usage error."""
        if self._settings is None:
            try:
                settings = settings_from_env(self._env, **self._overrides)
            except ValueError as exc:
                raise click.UsageError(str(exc)) from exc
            self._settings = discovered(settings) if self.discover else settings
            self.secret_key_in_data_dir = not settings.secret_key and bool(self._settings.secret_key)
        return self._settings

    @property
    def database_url(self) -> str:
        if not self.settings.database_url:
            raise MissingConfig(f"set TRACKGATE_DATABASE_URL ({_FIND_THEM})")
        return self.settings.database_url

    @property
    def redis_url(self) -> str:
        if not self.settings.redis_url:
            raise MissingConfig(f"set TRACKGATE_REDIS_URL ({_FIND_THEM})")
        return self.settings.redis_url

    @property
    def server(self) -> ServerSettings:
        """The settings of a command that runs or feeds the pipeline: both URLs present."""
        try:
            return self.settings.require()
        except MissingSetting as exc:
            raise MissingConfig(f"{exc} ({_FIND_THEM})") from exc

    def configure_logging(self) -> None:
        if not self._logging:
            configure_logging(self.settings.log_level, self.settings.log_format)
            self._logging = True


def discovered(settings: Settings) -> Settings:
    """``settings`` with what is unset taken from the data directory: the URLs of the ``trackgate up``
    running there (``trackgate/state.py``), and the secret key it generated."""
    found: dict[str, Any] = {}
    if not settings.database_url or not settings.redis_url:
        running = read_state(settings.data_dir)
        if running is not None:
            found["database_url"] = settings.database_url or running.database_url
            found["redis_url"] = settings.redis_url or running.redis_url
    if not settings.secret_key:
        found["secret_key"] = read_secret_key(settings.data_dir)
    return msgspec.structs.replace(settings, **found) if found else settings


pass_cli_config = click.make_pass_decorator(CliConfig, ensure=True)


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Map what the user can fix to a ``click.ClickException`` (one line, exit status 1)."""
    try:
        yield
    except psycopg.errors.UndefinedTable as exc:
        raise click.ClickException(
            f"the database has no trackgate tables ({_first_line(exc)}): run `trackgate migrate`"
        ) from exc
    except psycopg.OperationalError as exc:
        if type(exc) is not psycopg.OperationalError:
            raise  # a query's failure (deadlock, cancel, ...): not a setting the user can fix
        # libpq's connection failures: refused, unknown host, bad password, no such database
        reason = _first_line(exc).removeprefix("connection failed: ")
        raise click.ClickException(
            f"cannot connect to PostgreSQL: {reason}. Start it, or point TRACKGATE_DATABASE_URL at one"
            " that runs"
        ) from exc
    except SecretKeyMissing as exc:
        raise click.ClickException(str(exc)) from exc
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise click.ClickException(
            f"cannot connect to Redis: {_first_line(exc).rstrip('.')}. Start it, or point"
            " TRACKGATE_REDIS_URL at one that runs"
        ) from exc


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).strip().splitlines()[0].split()) if str(exc).strip() else type(exc).__name__

"""``trackgate secret-key``: the key destination credentials are encrypted with (``TRACKGATE_SECRET_KEY``,
or the one ``trackgate up`` generated in its data directory)."""

from __future__ import annotations

import click

from trackgate import api_keys
from trackgate.cli.config import CliConfig, pass_cli_config
from trackgate.schemas.destinations import is_fernet_key, secret_keys
from trackgate.state import SECRET_KEY_FILE, write_secret_key
from trackgate.workers import destinations as destination_store

_NOT_FERNET = (
    "{what} is not a Fernet key (32 random bytes in URL-safe base64, 44 characters, as"
    " `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'` prints):"
    " a new key must be one, so that no passphrase weaker than that ever encrypts credentials"
)


@click.group("secret-key")
def secret_key() -> None:
    """The key destination credentials are encrypted with."""


@secret_key.command("rotate")
@click.option(
    "--new-key",
    default=None,
    help="The key to encrypt under from now on (a Fernet key). Default: the first of several keys in"
    " TRACKGATE_SECRET_KEY (new,old), else a generated one.",
)
@pass_cli_config
def secret_key_rotate(cfg: CliConfig, new_key: str | None) -> None:
    """Re-encrypt every destination's credentials and API key under a new key (the old keys still decrypt them
    while the rotation runs: MultiFernet)."""
    from cryptography.fernet import Fernet

    database_url = cfg.database_url
    current = secret_keys(cfg.settings.secret_key)
    if new_key is not None:
        if not is_fernet_key(new_key):
            raise click.BadParameter(_NOT_FERNET.format(what="the new key"), param_hint="--new-key")
    elif len(current) > 1 and not cfg.secret_key_in_data_dir:
        new_key = current[0]
        if not is_fernet_key(new_key):
            raise click.UsageError(_NOT_FERNET.format(what="the first key of TRACKGATE_SECRET_KEY"))
    else:
        new_key = Fernet.generate_key().decode()
    keys = [new_key, *(key for key in current if key != new_key)]
    n = destination_store.reencrypt_credentials(database_url, ",".join(keys))
    n_keys = api_keys.reencrypt(database_url, ",".join(keys))
    click.echo(
        f"re-encrypted the credentials of {n} destination(s) and {n_keys} API key(s) under the new key"
    )
    if cfg.secret_key_in_data_dir:
        write_secret_key(cfg.settings.data_dir, new_key)
        click.echo(
            f"saved it in {SECRET_KEY_FILE} of {cfg.settings.data_dir}; restart `trackgate up` so that its"
            " workers use it"
        )
    else:
        click.echo(
            f"set TRACKGATE_SECRET_KEY={new_key} for every worker and command (the old key is no longer"
            " needed)"
        )

"""The ``ciphermilter`` command line (click).

Each concern registers its commands on :data:`main` from its own module; the
global options (store, master key, config) live here.
"""

from __future__ import annotations

import json
import os
import sys

import click

from ciphermilter import __version__

DEFAULT_STORE = os.path.join("var", "ciphermilter.db")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ciphermilter")
@click.option("--store", "store_path", envvar="CIPHERMILTER_STORE", type=click.Path(dir_okay=False),
              help="SQLite key store (default: ./var/ciphermilter.db, or the config file's store).")
@click.option("--master-key", "master_key_path", envvar="CIPHERMILTER_MASTER_KEY", type=click.Path(dir_okay=False),
              help="Master key file that protects private keys (default: the store path plus .key).")
@click.option("--config", "config_path", envvar="CIPHERMILTER_CONFIG", type=click.Path(dir_okay=False),
              help="TOML configuration file.")
@click.pass_context
def main(ctx: click.Context, store_path, master_key_path, config_path):
    """Decrypt and verify inbound S/MIME and OpenPGP mail in front of Postfix's scanners."""
    ctx.obj = {"store_path": store_path, "master_key_path": master_key_path, "config_path": config_path}


def fail(message: str, code: int = 1):
    """One clear line on stderr and a non-zero exit."""
    click.echo(f"ciphermilter: {message}", err=True)
    sys.exit(code)


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def open_settings(ctx: click.Context):
    """Settings from ``--config`` (refused with file, line and reason when wrong), else the defaults."""
    from ciphermilter import config

    path = ctx.obj.get("config_path") if ctx.obj else None
    if not path:
        return config.Settings()
    try:
        return config.load(path).settings
    except config.ConfigError as exc:
        fail(str(exc))


from ciphermilter.daemon import run  # noqa: E402  (at the end: the daemon module imports fail() from here)

main.add_command(run)


def store_paths(ctx: click.Context) -> tuple[str, str]:
    """(store, master key): --store / --master-key or their environment variables, else the config file's, else
    ./var/ciphermilter.db and the store path plus .key."""
    from ciphermilter import config
    from ciphermilter.masterkey import default_path

    obj = ctx.find_root().obj
    configured = config.DaemonConfig()
    if obj.get("config_path"):
        try:
            configured = config.load(obj["config_path"])
        except config.ConfigError as exc:
            fail(str(exc))
    if obj.get("store_path"):  # a store named on the command line comes with its own default key path
        store_path, default_key = obj["store_path"], default_path(obj["store_path"])
    else:
        store_path, default_key = configured.store, configured.master_key_path
    return store_path, obj.get("master_key_path") or default_key


def open_store(ctx: click.Context, create: bool = False):
    """The KeyStore the command line names (a new one with ``create``); one clear line and exit 1 on failure."""
    from ciphermilter.store import KeyStore, StoreError

    store_path, key_path = store_paths(ctx)
    try:
        return KeyStore.create(store_path, key_path) if create else KeyStore.open(store_path, key_path)
    except StoreError as exc:
        fail(str(exc))


from ciphermilter import cli_store  # noqa: E402  (the commands register themselves on main)

for _group in (cli_store.store_group, cli_store.keys_group, cli_store.trust_group, cli_store.domains_group):
    main.add_command(_group)
from ciphermilter import cli_decrypt  # noqa: E402,F401  (registers "decrypt" on main)
from ciphermilter.stats import stats_command  # noqa: E402
main.add_command(stats_command)
from ciphermilter.check import check  # noqa: E402
main.add_command(check)

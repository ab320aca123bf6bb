"""What every command shares: one-line errors, JSON output, and finding the store and settings.

Order of precedence for the store: ``--store`` / ``--master-key`` (or their
environment variables), then the ``--config`` file's ``store`` and
``master_key``, then the embedded default ``./var/ciphermilter.db`` with its
key beside it.
"""

from __future__ import annotations

import contextlib
import json
import sys

import click

from ciphermilter import config
from ciphermilter.core.settings import Settings
from ciphermilter.store.keystore import KeyStore, StoreError


def fail(message: str, code: int = 1):
    """One clear line on stderr and a non-zero exit."""
    click.echo(f"ciphermilter: {message}", err=True)
    sys.exit(code)


@contextlib.contextmanager
def reported(*errors: type[Exception], prefix: str = ""):
    """Turn ``errors`` raised in the block into one clear line on stderr and exit status 1."""
    try:
        yield
    except errors as exc:
        fail(f"{prefix}{exc}")


def to_json(data) -> str:
    """The JSON every ``--json`` and report of the CLI writes: indented, keys sorted, the rest as text."""
    return json.dumps(data, indent=2, sort_keys=True, default=str)


def echo_json(data) -> None:
    click.echo(to_json(data))


def echo_listing(items: list, as_json: bool, line) -> None:
    """A listing: all of it as JSON with --json, else ``line(item)`` for each item."""
    if as_json:
        echo_json(items)
        return
    for item in items:
        click.echo(line(item))


def _options(ctx: click.Context) -> dict:
    return ctx.find_root().obj or {}


def load_config(ctx: click.Context) -> config.DaemonConfig:
    """The ``--config`` file (refused with file, line and reason when wrong), else the defaults; read once."""
    options = _options(ctx)
    if "config" not in options:
        with reported(config.ConfigError):
            options["config"] = config.load(options.get("config_path"))
    return options["config"]


def open_settings(ctx: click.Context) -> Settings:
    return load_config(ctx).settings


def resolved_config(ctx: click.Context) -> config.DaemonConfig:
    """The configuration with the store and master key the command line names (module docstring)."""
    options = _options(ctx)
    return load_config(ctx).with_store(options.get("store_path"), options.get("master_key_path"))


def store_paths(ctx: click.Context) -> tuple[str, str]:
    """(store, master key) by the order of precedence in the module docstring."""
    resolved = resolved_config(ctx)
    return resolved.store, resolved.master_key_path


def open_store(ctx: click.Context, create: bool = False, read_only: bool = False) -> KeyStore:
    """The KeyStore the command line names (a new one with ``create``, one that is never written to with
    ``read_only``); one clear line and exit 1 on failure."""
    store_path, key_path = store_paths(ctx)
    with reported(StoreError):
        if create:
            return KeyStore.create(store_path, key_path)
        return KeyStore.open_read_only(store_path, key_path) if read_only else KeyStore.open(store_path, key_path)

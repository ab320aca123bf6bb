"""``ciphermilter store``: create, inspect, back up, restore, export and import the whole key store.

Each command runs as one store transaction: on any error it prints one line
on stderr, exits non-zero and leaves the store exactly as it was.
"""

from __future__ import annotations

import os
from typing import BinaryIO, TextIO

import click

from ciphermilter.cli.common import (command_store, echo_json, fail, json_option, open_store, report_import, reported,
                                     store_paths)
from ciphermilter.cli.secrets import interactive, required_secret, secret_options, secret_value, write_private_file
from ciphermilter.store import admin
from ciphermilter.store.keystore import KeyStore
from ciphermilter.store.schema import StoreError


@click.group("store")
def store_group() -> None:
    """Create, inspect, back up and move the key store."""


@store_group.command("init")
@click.pass_context
def store_init(ctx: click.Context) -> None:
    """Create a new store and its master key (refuses to touch an existing one).

    \b
    Examples:
      ciphermilter store init
      ciphermilter --store /var/lib/ciphermilter/ciphermilter.db store init
    """
    store = open_store(ctx, create=True)
    ctx.call_on_close(store.close)
    key_path = store_paths(ctx)[1]
    click.echo(f"created store {store.path}")
    click.echo(f"master key {key_path}: keep a copy apart from the store; without it no private key can be read")


@store_group.command("info")
@json_option
@click.pass_context
def store_info(ctx: click.Context, as_json: bool) -> None:
    """Show the store's location, schema version and contents.

    \b
    Examples:
      ciphermilter store info
      ciphermilter store info --json
    """
    store = command_store(ctx)
    info = {**admin.info(store), "master_key": store_paths(ctx)[1],
            "integrity": admin.integrity_check(store) or "ok"}
    if as_json:
        echo_json(info)
        return
    for name, value in info.items():
        if isinstance(value, dict):  # the counts of each table
            for table, count in value.items():
                click.echo(f"{table}: {count}")
        else:
            click.echo(f"{name}: {value}")


@store_group.command("migrate")
@click.pass_context
def store_migrate(ctx: click.Context) -> None:
    """Bring the store to this ciphermilter's schema (a PostgreSQL store is never migrated when opened).

    \b
    Examples:
      ciphermilter --config /etc/ciphermilter/ciphermilter.toml store migrate
    """
    with reported(StoreError):
        found, now = KeyStore.migrate(*store_paths(ctx))
    click.echo(f"schema version {now}" + (f" (was {found})" if found != now else " already: nothing to do"))


@store_group.command("backup")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace FILE if it exists (once the new copy is whole).")
@click.pass_context
def store_backup(ctx: click.Context, file: str, force: bool) -> None:
    """Write a consistent copy of the store to FILE (safe while the milter runs).

    \b
    Examples:
      ciphermilter store backup /var/backups/ciphermilter.db
      ciphermilter store backup --force /var/backups/ciphermilter.db   # from cron, every night
      ciphermilter store backup /var/backups/ciphermilter-$(date +%F).db
    """
    store = command_store(ctx)
    with reported(StoreError):
        admin.backup(store, file, replace=force)
    click.echo(f"backup written to {file}")
    click.echo(f"it holds the private keys sealed with {store_paths(ctx)[1]}; that master key"
               " is NOT in the backup: keep a copy of it apart, you need it to restore")


@store_group.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--force", is_flag=True, help="Replace the contents of an existing store.")
@click.pass_context
def store_restore(ctx: click.Context, file: str, force: bool) -> None:
    """Replace the store with the backup FILE (the master key must be the one it was made with).

    \b
    Examples:
      ciphermilter store restore /var/backups/ciphermilter.db --force
    """
    store_path, key_path = store_paths(ctx)
    if os.path.exists(store_path) and not force:
        fail(f"store {store_path} exists: give --force to replace its contents with the backup")
    with reported(StoreError):
        admin.restore(file, store_path, key_path).close()
    click.echo(f"restored {store_path} from {file}")


@store_group.command("export")
@click.argument("file", type=click.Path(dir_okay=False))
@secret_options("password", "password that protects the exported private keys")
@click.pass_context
def store_export(ctx: click.Context, file: str, password: str | None, password_file: TextIO | None) -> None:
    """Write every key, certificate, trust anchor, domain and binding to FILE (JSON, private keys under a password).

    \b
    Examples:
      ciphermilter store export --password-file export.pass keys.json
    """
    password = required_secret(password, password_file, "export password")
    store = command_store(ctx)
    with reported(StoreError):
        data = admin.export_all(store, password)
    write_private_file(file, data)
    click.echo(f"exported to {file}")


@store_group.command("import")
@click.argument("file", type=click.File("rb"))
@secret_options("password", "export password")
@click.pass_context
def store_import(ctx: click.Context, file: BinaryIO, password: str | None, password_file: TextIO | None) -> None:
    """Read back a file written by 'store export'.

    \b
    Examples:
      ciphermilter store import --password-file export.pass keys.json
    """
    password = secret_value(password, password_file)
    data = file.read()
    if password is None and interactive():
        password = click.prompt("Export password", hide_input=True)
    store = command_store(ctx)
    with reported(StoreError, prefix=f"{file.name}: "):
        report_import(admin.import_export(store, data, password))

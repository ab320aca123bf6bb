"""What every command shares: one-line errors, JSON output, and finding the store and settings.

Order of precedence for the store: ``--store`` / ``--master-key`` (or their
environment variables), then the ``--config`` file's ``store`` and
``master_key``, then the embedded default ``./var/ciphermilter.db`` with its
key beside it. :func:`ciphermilter.config.resolve` applies that order, once,
for every command (``run`` and ``check`` too); the global options travel in
``ctx.obj`` as an :class:`App`.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NoReturn, TypeVar

import click

from ciphermilter import config
from ciphermilter.core.settings import Settings
from ciphermilter.store.keystore import KeyStore
from ciphermilter.store.rows import ImportResult
from ciphermilter.store.schema import StoreError

T = TypeVar("T")


@dataclass
class App:
    """The global options of ``ciphermilter`` (``ctx.obj``), and the configuration once it was read."""

    store_path: str | None = None
    master_key_path: str | None = None
    config_path: str | None = None
    loaded: config.DaemonConfig | None = None  # the --config file, read by the first command that asks

    def resolve(self, config_path: str | None = None) -> config.DaemonConfig:
        """The configuration (``config_path`` over the global ``--config``) with the command line's store
        and master key; ConfigError with file, line and reason when the file is wrong."""
        if config_path is not None:
            return config.resolve(config_path, self.store_path, self.master_key_path)
        if self.loaded is None:
            self.loaded = config.load(self.config_path)
        return self.loaded.with_store(self.store_path, self.master_key_path)


# The --json flag of every listing and report.
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def fail(message: str, code: int = 1) -> NoReturn:
    """One clear line on stderr and a non-zero exit."""
    click.echo(f"ciphermilter: {message}", err=True)
    sys.exit(code)


@contextlib.contextmanager
def reported(*errors: type[Exception], prefix: str = "") -> Iterator[None]:
    """Turn ``errors`` raised in the block into one clear line on stderr and exit status 1."""
    try:
        yield
    except errors as exc:
        fail(f"{prefix}{exc}")


def to_json(data: object) -> str:
    """The JSON every ``--json`` and report of the CLI writes: indented, keys sorted, the rest as text."""
    return json.dumps(data, indent=2, sort_keys=True, default=str)


def echo_json(data: object) -> None:
    click.echo(to_json(data))


def echo_listing(items: Sequence[T], as_json: bool, line: Callable[[T], str]) -> None:
    """A listing: all of it as JSON with --json, else ``line(item)`` for each item."""
    if as_json:
        echo_json(items)
        return
    for item in items:
        click.echo(line(item))


def report_import(result: ImportResult) -> None:
    """What an import added and found present (stdout) and its warnings (stderr)."""
    for line in result.added:
        click.echo(f"added: {line}")
    for line in result.already_present:
        click.echo(f"already present: {line}")
    for line in result.warnings:
        click.echo(f"warning: {line}", err=True)


def app(ctx: click.Context) -> App:
    """The global options; a command invoked on its own (tests, ``run`` from a unit file) gets defaults."""
    root = ctx.find_root()
    if not isinstance(root.obj, App):
        root.obj = App()
    return root.obj


def resolved_config(ctx: click.Context) -> config.DaemonConfig:
    """The configuration with the store and master key the command line names (module docstring)."""
    with reported(config.ConfigError):
        return app(ctx).resolve()


def open_settings(ctx: click.Context) -> Settings:
    return resolved_config(ctx).settings


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


def removal(remove: Callable[[], bool], absent: str, done: str) -> None:
    """Run one removal from the store: the line ``done``, or ``absent`` and exit 1 when there was nothing
    to remove; a refusal (StoreError) is one line too."""
    with reported(StoreError):
        removed = remove()
    if not removed:
        fail(absent)
    click.echo(done)


def command_store(ctx: click.Context) -> KeyStore:
    """The store for this command, closed when the command ends."""
    store = open_store(ctx)
    ctx.call_on_close(store.close)
    return store

"""The ``ciphermilter`` command line (click): the group, its global options, and every command."""

from __future__ import annotations

import os
from typing import Any, NoReturn

import click

from ciphermilter import __version__
from ciphermilter.cli.check import check
from ciphermilter.cli.decrypt import decrypt
from ciphermilter.cli.stats import stats_command
from ciphermilter.cli.common import App, reported
from ciphermilter.cli.domains import domains_group
from ciphermilter.cli.keys import keys_group
from ciphermilter.cli.run import run
from ciphermilter.cli.store import store_group
from ciphermilter.cli.trust import trust_group
from ciphermilter.store.schema import StoreError


# The exit status of a command a person interrupted with Ctrl-C: 128 + SIGINT, as the shell reports it.
INTERRUPTED = 130


class _Main(click.Group):
    """The ``ciphermilter`` group: Ctrl-C ends any command with one line and status 130 (click says "Aborted!"
    and exits 1, which a script cannot tell from a failure), a store that fails mid-command (a database gone
    away) is one line, no traceback, and ``NO_COLOR`` (no-color.org) turns colour off."""

    def invoke(self, ctx: click.Context) -> Any:
        if os.environ.get("NO_COLOR"):
            ctx.color = False  # click.echo then strips the styles of every command below
        try:
            with reported(StoreError):
                return super().invoke(ctx)
        except KeyboardInterrupt:
            self._interrupted(ctx)
        except click.Abort as exc:  # a prompt turns Ctrl-C into Abort; end of input stays click's Abort
            if not isinstance(exc.__context__, KeyboardInterrupt):
                raise
            self._interrupted(ctx)

    @staticmethod
    def _interrupted(ctx: click.Context) -> NoReturn:
        click.echo("\nciphermilter: interrupted", err=True)
        ctx.exit(INTERRUPTED)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ciphermilter")
@click.option("--store", "store_path", envvar="CIPHERMILTER_STORE", type=click.Path(dir_okay=False, readable=False),
              help="Key store: a SQLite file (path or sqlite:///path) or postgresql://… (default:"
                   " ./var/ciphermilter.db, or the config file's store).")
@click.option("--master-key", "master_key_path", envvar="CIPHERMILTER_MASTER_KEY",
              type=click.Path(dir_okay=False, readable=False),
              help="Master key file that protects private keys (default: the store path plus .key;"
                   " a PostgreSQL store needs it named).")
@click.option("--config", "config_path", envvar="CIPHERMILTER_CONFIG", type=click.Path(dir_okay=False),
              help="TOML configuration file.")
@click.pass_context
def main(ctx: click.Context, store_path: str | None, master_key_path: str | None, config_path: str | None) -> None:
    """Decrypt and verify inbound S/MIME and OpenPGP mail in front of Postfix's scanners."""
    ctx.obj = App(store_path, master_key_path, config_path)


for command in (store_group, keys_group, trust_group, domains_group, decrypt, run, check, stats_command):
    main.add_command(command)

"""``ciphermilter run``: the command that starts the milter daemon.

The command only reads its options and the configuration and turns the daemon's
start-up errors into the CLI's one-line failure; everything the daemon does is in
:mod:`ciphermilter.daemon.serve`, which knows nothing of click (the daemon layer
sits below the CLI, ARCHITECTURE.md).
"""

from __future__ import annotations

import click

from ciphermilter.cli.common import app, fail
from ciphermilter.config import ConfigError
from ciphermilter.daemon.serve import ServeError, serve


@click.command("run")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="TOML configuration file (default: the global --config, else built-in defaults).")
@click.option("--stderr/--no-stderr", default=True, show_default=True,
              help="Log to stderr as well as to syslog (turn off under a supervisor that keeps stderr).")
@click.pass_context
def run(ctx: click.Context, config_path: str | None, stderr: bool) -> None:
    """Run the milter daemon until SIGTERM.

    \b
    Examples:
      ciphermilter --config /etc/ciphermilter/ciphermilter.toml run --no-stderr
      ciphermilter --store var/ciphermilter.db run
    """
    try:
        serve(app(ctx).resolve(config_path), stderr)
    except ConfigError as exc:
        fail(str(exc), 2)
    except ServeError as exc:
        fail(str(exc))

"""``ciphermilter stats``: the running daemon's counters, as text, JSON or Prometheus exposition."""

from __future__ import annotations

import datetime
import os

import click

from ciphermilter.cli.common import echo_json, fail, reported, resolved_config
from ciphermilter.config import ConfigError
from ciphermilter.daemon.stats import COUNTERS, Snapshot, prometheus, read_stats_file

def _stats_file_of(ctx: click.Context) -> str:
    """The daemon's stats_file: from --config when it sets one, else beside the store."""
    with reported(ConfigError):
        return resolved_config(ctx).stats_path


def _human(snapshot: Snapshot) -> list[str]:
    lines = [f"started: {snapshot['started']}  updated: {snapshot['updated']}  pid: {snapshot['pid']}"]
    width = max(map(len, COUNTERS))
    lines += [f"{name:<{width}}  {snapshot['counters'].get(name, 0)}" for name in COUNTERS]
    timing = snapshot["processing_seconds"]
    slowest = timing["max"]
    if timing["quantiles"] and slowest is not None:  # both are there once a message was timed
        quantiles = "  ".join(f"p{float(q) * 100:g}={v * 1000:.1f}ms" for q, v in timing["quantiles"].items())
        lines.append(f"processing time: {quantiles}  max={slowest * 1000:.1f}ms"
                     f" (last {timing['window']} messages)")
    results = [f"{result} {timing['count']}" for result, timing in snapshot.get("results", {}).items()
               if timing["count"]]
    if results:
        lines.append(f"results: {', '.join(results)}")
    store = snapshot.get("store")
    if store is not None:
        expiry = store["earliest_key_expiry"]
        first = "" if expiry is None else (", first private key expires "
                                           f"{datetime.datetime.fromtimestamp(expiry, datetime.timezone.utc):%Y-%m-%d}")
        lines.append(f"key store: {'reachable' if store['reachable'] else 'UNREACHABLE'}{first}")
    for header, reasons in sorted(snapshot["failures"].items()):
        lines += [f"failure {header}: {reason}: {count}" for reason, count in sorted(reasons.items())]
    return lines


@click.command("stats")
@click.option("--file", "stats_file", type=click.Path(dir_okay=False),
              help="Statistics file the daemon writes (default: stats_file of --config, else beside the store).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--prometheus", "as_prometheus", is_flag=True, help="Prometheus text exposition format.")
@click.pass_context
def stats_command(ctx: click.Context, stats_file: str | None, as_json: bool, as_prometheus: bool) -> None:
    """Show the running daemon's counters: messages, decrypted, verified, failures, processing time.

    \b
    Examples:
      ciphermilter --config /etc/ciphermilter/ciphermilter.toml stats
      ciphermilter stats --json | jq .counters.smime_decrypted
      ciphermilter stats --file /var/lib/ciphermilter/ciphermilter.stats.json --prometheus
    """
    if as_json and as_prometheus:
        fail("give --json or --prometheus, not both")
    try:
        snapshot = read_stats_file(stats_file or _stats_file_of(ctx))
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        echo_json(snapshot)
    elif as_prometheus:
        click.echo(prometheus(snapshot), nl=False)
    else:
        for line in _human(snapshot):
            click.echo(line)
    if not _running(snapshot["pid"]):  # after the counters, so that a script still gets them; exit 1 all the same
        fail(f"the daemon that wrote these counters (pid {snapshot['pid']}) is not running:"
             f" they are its last, written at {snapshot['updated']}")


def _running(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user's counts: the daemon runs as its own user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""``ciphermilter domains``: the internal domains, whose recipients get mail decrypted.

Besides these, the configuration file's ``internal_domains`` count too; the
store's list changes without a restart (the daemon sees it at the next message).
"""

from __future__ import annotations

import click

from ciphermilter.cli.common import command_store, echo_listing, json_option, removal, reported
from ciphermilter.store import admin
from ciphermilter.store.schema import StoreError


@click.group("domains")
def domains_group() -> None:
    """Internal domains: mail to them is decrypted (example.com or *.example.com)."""


@domains_group.command("add")
@click.argument("domain")
@click.pass_context
def domains_add(ctx: click.Context, domain: str) -> None:
    """Add an internal domain; *.example.com covers every subdomain of example.com.

    \b
    Examples:
      ciphermilter domains add example.com
      ciphermilter domains add '*.example.com'
    """
    with reported(StoreError):
        added = admin.add_domain(command_store(ctx), domain)
    click.echo(f"{'added' if added else 'already present'}: {domain}")


@domains_group.command("list")
@json_option
@click.pass_context
def domains_list(ctx: click.Context, as_json: bool) -> None:
    """List the internal domains.

    \b
    Examples:
      ciphermilter domains list --json
    """
    echo_listing(admin.list_domains(command_store(ctx)), as_json, str)


@domains_group.command("remove")
@click.argument("domain")
@click.pass_context
def domains_remove(ctx: click.Context, domain: str) -> None:
    """Remove an internal domain.

    \b
    Examples:
      ciphermilter domains remove example.com
    """
    removal(lambda: admin.remove_domain(command_store(ctx), domain), f"no domain {domain}", f"removed {domain}")

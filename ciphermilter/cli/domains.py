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
    suffix = _public_suffix(domain.strip().lower())
    if suffix:
        click.echo(f"warning: {domain} makes every domain under .{suffix} internal: mail to any of them would be"
                   f" decrypted here; remove it with: ciphermilter domains remove '{domain}'", err=True)


# Second-level labels that country registries sell names under (co.uk, com.au, ac.jp): a wildcard over one of
# them is as wide as one over a top-level domain. Not the whole public suffix list: the common mistakes.
_SECOND_LEVEL = frozenset({"co", "com", "net", "org", "gov", "ac", "edu", "or", "ne", "go", "gv"})


def _public_suffix(domain: str) -> str | None:
    """The registry suffix a domain (or wildcard) covers whole, when it does: ``*.com``, ``com``, ``*.co.uk``."""
    labels = domain.removeprefix("*.").split(".")
    if len(labels) == 1:
        return labels[0]
    if len(labels) == 2 and len(labels[1]) == 2 and labels[0] in _SECOND_LEVEL:
        return ".".join(labels)
    return None


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

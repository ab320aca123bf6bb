"""``ciphermilter trust``: the S/MIME trust anchors (root certificates) signatures are verified up to.

A certificate becomes an anchor only by this explicit admin action, never by
an import of keys or by a message: anchors live in a table of their own.
"""

from __future__ import annotations

from typing import BinaryIO

import click
from cryptography import x509

from ciphermilter.cli.common import command_store, echo_listing, fail, json_option, removal, reported
from ciphermilter.formats import keyfiles
from ciphermilter.store import admin
from ciphermilter.store.schema import StoreError


@click.group("trust")
def trust_group() -> None:
    """S/MIME trust anchors (root certificates)."""


@trust_group.command("add")
@click.argument("file", type=click.File("rb"))
@click.pass_context
def trust_add(ctx: click.Context, file: BinaryIO) -> None:
    """Trust every certificate in FILE (PEM or DER) as a root for S/MIME signatures.

    \b
    Examples:
      ciphermilter trust add root-ca.pem
    """
    with reported(keyfiles.KeyFormatError, prefix=f"{file.name}: "):
        bundle = keyfiles.parse(file.read())
    if bundle.private_keys or bundle.pgp_keys or not bundle.certificates:
        fail(f"{file.name}: a trust anchor file holds certificates only")
    with reported(StoreError, prefix=f"{file.name}: "):
        added = admin.add_trust_anchors(command_store(ctx), bundle.certificates)
    for (subject, is_new), der in zip(added, bundle.certificates):
        click.echo(f"{'added' if is_new else 'already present'}: trust anchor {subject}")
        if not _is_ca(der):
            click.echo(f"warning: {subject} is not a CA certificate: trusting a person's own certificate vouches"
                       " for that one signer only; add the CA that issued it instead", err=True)


def _is_ca(der: bytes) -> bool:
    """Whether a certificate says it is a CA (basicConstraints cA): what an anchor should be (RFC 5280 4.2.1.9)."""
    try:
        return bool(x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:  # a v1 root has no extensions: a CA only by being self-signed
        certificate = x509.load_der_x509_certificate(der)
        return certificate.issuer == certificate.subject


@trust_group.command("list")
@json_option
@click.pass_context
def trust_list(ctx: click.Context, as_json: bool) -> None:
    """List the trust anchors.

    \b
    Examples:
      ciphermilter trust list --json
    """
    echo_listing(admin.list_trust_anchors(command_store(ctx)), as_json,
                 lambda anchor: f"{anchor['id'][:16]}  {anchor['subject']}  (until {anchor['not_after']})")


@trust_group.command("remove")
@click.argument("ident")
@click.pass_context
def trust_remove(ctx: click.Context, ident: str) -> None:
    """Stop trusting an anchor (ID: 8 or more hex digits of its SHA-256 thumbprint).

    \b
    Examples:
      ciphermilter trust remove 3F2A9C10
    """
    removal(lambda: admin.remove_trust_anchor(command_store(ctx), ident), f"no trust anchor {ident}",
            f"removed trust anchor {ident}")

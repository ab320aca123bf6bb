"""``ciphermilter keys``: import, list, show, bind, export and remove certificates and OpenPGP keys.

Each command runs as one store transaction: on any error it prints one line
on stderr, exits non-zero and leaves the store exactly as it was. A file
that needs a password or passphrase asks for it when a person is at the
terminal, and says which option gives it otherwise.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable
from typing import ContextManager, TextIO

import click

from ciphermilter.cli.common import (command_store, echo_json, fail, json_option, open_settings,
                                     removal, report_import, reported)
from ciphermilter.cli.secrets import interactive, required_secret, secret_options, secret_value, write_private_file
from ciphermilter.formats import keyfiles
from ciphermilter.store import admin
from ciphermilter.store.admin import ExportFormat, KeyInfo
from ciphermilter.store.schema import StoreError

PROGRESS_MIN_FILES = 5  # fewer files read too fast for a progress bar to help


def _progress(files: tuple[str, ...]) -> ContextManager[Iterable[str]]:
    """A progress bar over many files, only for a person at a terminal: scripts get the same clean output."""
    if len(files) < PROGRESS_MIN_FILES or not sys.stderr.isatty():
        return contextlib.nullcontext(files)
    return click.progressbar(files, label="Reading keys", file=sys.stderr, item_show_func=lambda name: name)


class _Unusable(Exception):
    """A file of an import that cannot be read or parsed; the text says why, in words."""


@click.group("keys")
def keys_group() -> None:
    """Import, list, show, export and remove certificates and keys."""


def _parse_with_prompts(name: str, data: bytes, password: str | None,
                        passphrase: str | None) -> tuple[keyfiles.Bundle, str | None, str | None]:
    """Parse one file, asking for a missing password or passphrase when a person is at the terminal."""
    while True:
        try:
            return keyfiles.parse(data, password=password.encode("utf-8") if password is not None else None,
                                   passphrase=passphrase), password, passphrase
        except keyfiles.SecretNeeded as exc:
            if not interactive():
                raise _Unusable(f"{name}: {exc} (--{exc.kind} or --{exc.kind}-file)") from None
            answer = str(click.prompt(f"{name}: {exc.kind}", hide_input=True, err=True))
            password, passphrase = (answer, passphrase) if exc.kind == "password" else (password, answer)
        except keyfiles.KeyFormatError as exc:
            raise _Unusable(f"{name}: {exc}") from None


def _read(name: str) -> bytes:
    """The bytes of a key file; ``-`` is standard input (the README's walkthrough pipes a key in)."""
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        with open(name, "rb") as file:
            return file.read()
    except OSError as exc:
        raise _Unusable(f"{name}: cannot read it: {exc.strerror}") from None


@keys_group.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--skip-unusable", is_flag=True,
              help="Import the files that can be read, name the others (skipped: ...) on stderr.")
@secret_options("password", "PKCS#12 or private key password")
@secret_options("passphrase", "OpenPGP secret key passphrase")
@click.pass_context
def keys_import(ctx: click.Context, files: tuple[str, ...], skip_unusable: bool, password: str | None,
                password_file: TextIO | None, passphrase: str | None, passphrase_file: TextIO | None) -> None:
    """Import certificates and keys: PKCS#12 (also PEM-armoured), PEM/DER certificates and keys, OpenPGP keys.

    All FILES are imported together or not at all; a private key needs its
    certificate in the same import or already in the store. With
    --skip-unusable a file that cannot be read or parsed is skipped (a
    "skipped:" line on stderr says why) and the rest imported together;
    the exit status is 0 when the rest imported.

    \b
    Examples:
      ciphermilter keys import bob.p12 --password-file bob.pass
      ciphermilter keys import bob.cert.pem bob.key.pem
      ciphermilter keys import bob.sec.asc --passphrase-file bob.pp
      ciphermilter keys import --skip-unusable /srv/keys/*.pem
    """
    password, passphrase = secret_value(password, password_file), secret_value(passphrase, passphrase_file)
    store = command_store(ctx)
    named, skipped = [], []
    with _progress(files) as progress:
        for name in progress:
            try:
                bundle, password, passphrase = _parse_with_prompts(name, _read(name), password, passphrase)
            except _Unusable as exc:
                if not skip_unusable:
                    fail(str(exc))
                skipped.append(str(exc))
                continue
            named.append((name, bundle))
    if not named:
        fail(f"nothing imported: none of the {len(files)} files could be used")
    with reported(StoreError):
        report_import(admin.import_bundles(store, named))
    for line in skipped:
        click.echo(f"skipped: {line}", err=True)


LIST_HEADER = ("ID", "KIND", "ALGORITHM", "CREATED", "EXPIRES", "HOLDS", "E-MAIL", "READERS", "MARKS")


def _key_row(key: KeyInfo) -> tuple[str, ...]:
    """One row of ``keys list``: what ``gpg --list-keys`` shows of a key, and what the store holds of it."""
    kind = "x509" if key["type"] == "x509" else f"pgp v{key['version']}"
    holds = "private" if key["private_key"] else key["origin"]
    flags = (("expired", key["expired"]), ("revoked", key["revoked"]))
    marks = " ".join(f"[{mark}]" for mark, marked in flags if marked)
    return (key["id"][:16], kind, key["algorithm"], key["created"][:10], (key["expires"] or "never")[:10], holds,
            ", ".join(key["emails"]) or "-", ", ".join(key["readers"]) or "-", marks)


def _table(rows: list[tuple[str, ...]]) -> str:
    """Columns padded to their widest cell, as ``column -t`` lays them out; no trailing blanks."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


@keys_group.command("list")
@json_option
@click.pass_context
def keys_list(ctx: click.Context, as_json: bool) -> None:
    """List certificates and OpenPGP keys, as gpg --list-keys does: ID, kind, algorithm and size, created,
    expires, what the store holds (private: the private key; else imported or harvested), e-mail addresses,
    readers, and [expired] or [revoked].

    \b
    Examples:
      ciphermilter keys list
      ciphermilter keys list --json
    """
    keys = admin.list_keys(command_store(ctx))
    if as_json:
        echo_json(keys)
    elif keys:
        click.echo(_table([LIST_HEADER, *map(_key_row, keys)]))


def _echo_key(key: KeyInfo) -> None:
    for name, value in key.items():
        click.echo(f"{name}: {', '.join(value) if isinstance(value, list) else value}")


@keys_group.command("show")
@click.argument("ident")
@json_option
@click.pass_context
def keys_show(ctx: click.Context, ident: str, as_json: bool) -> None:
    """Show one certificate or OpenPGP key by its ID (8 or more hex digits, or an OpenPGP key ID), or every
    key of an e-mail address (with --json: a list).

    \b
    Examples:
      ciphermilter keys show 84386E32596E0994
      ciphermilter keys show 8A351CCB200DA75B --json
      ciphermilter keys show bob@example.com
    """
    store = command_store(ctx)
    if "@" in ident:
        keys = admin.keys_of_address(store, ident)
        if not keys:
            fail(f"no key of {ident}")
        if as_json:
            echo_json(keys)
            return
        for number, key in enumerate(keys):
            if number:
                click.echo()
            _echo_key(key)
        return
    with reported(StoreError):
        found = admin.show_key(store, ident)
    if found is None:
        fail(f"no key {ident}")
    if as_json:
        echo_json(found)
    else:
        _echo_key(found)


@keys_group.command("remove")
@click.argument("ident")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation on a terminal.")
@click.pass_context
def keys_remove(ctx: click.Context, ident: str, yes: bool) -> None:
    """Remove a certificate (with its private key) or an OpenPGP key.

    On a terminal it shows the key and asks first (--yes does not); a script
    (no terminal) is not asked, as before: mail encrypted to a removed private
    key can no longer be decrypted, so keep a backup.

    \b
    Examples:
      ciphermilter keys remove 84386E32596E0994
      ciphermilter keys remove --yes 84386E32596E0994
    """
    store = command_store(ctx)
    if not yes and interactive():
        with reported(StoreError):
            key = admin.show_key(store, ident)
        if key is None:
            fail(f"no key {ident}")
        held = " and its private key" if key["private_key"] else ""
        click.confirm(f"remove {key['type']} {key['id'][:16]} ({', '.join(key['emails']) or '-'}){held}?",
                      abort=True, err=True)
    removal(lambda: admin.remove_key(store, ident), f"no key {ident}", f"removed {ident}")


@keys_group.command("expire-harvested")
@click.option("--days", type=click.IntRange(min=0), default=None,
              help="Age in days (default: harvest_expiry_days of the configuration, 90).")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.pass_context
def keys_expire_harvested(ctx: click.Context, days: int | None, dry_run: bool) -> None:
    """Remove certificates and keys harvested from mail that were never used since, once older than the
    expiry age; what an administrator imported never expires. The daemon does this as it harvests.

    \b
    Examples:
      ciphermilter keys expire-harvested --dry-run
      ciphermilter keys expire-harvested --days 30
    """
    days = open_settings(ctx).harvest_expiry_days if days is None else days
    with reported(StoreError):
        removed = admin.expire_harvested(command_store(ctx), days, dry_run=dry_run)
    for line in removed:
        click.echo(f"{'would remove' if dry_run else 'removed'}: {line}")
    click.echo(f"{len(removed)} harvested certificates and keys (never used, harvested over {days} days ago)"
               f" {'would be' if dry_run else 'were'} removed")


@keys_group.command("bind")
@click.argument("ident")
@click.argument("address")
@click.pass_context
def keys_bind(ctx: click.Context, ident: str, address: str) -> None:
    """Make ADDRESS (or every address of @DOMAIN) a reader of a key we hold the private half of.

    A message encrypted to the key is decrypted for a recipient only when the
    recipient is a reader of it: the addresses of its certificate or user IDs,
    and its bindings. A harvested key gets no readers.

    \b
    Examples:
      ciphermilter keys bind 84386E32596E0994 team@example.com
      ciphermilter keys bind 8A351CCB200DA75B @example.com
    """
    with reported(StoreError):
        added = admin.bind(command_store(ctx), ident, address)
    click.echo(f"{'bound' if added else 'already bound'}: {address.strip().lower()} to {ident}")


@keys_group.command("unbind")
@click.argument("ident")
@click.argument("address")
@click.pass_context
def keys_unbind(ctx: click.Context, ident: str, address: str) -> None:
    """Remove a binding that 'keys bind' added (a certificate's own addresses stay its readers).

    \b
    Examples:
      ciphermilter keys unbind 84386E32596E0994 team@example.com
    """
    removal(lambda: admin.unbind(command_store(ctx), ident, address), f"{address} is not bound to {ident}",
            f"unbound: {address.strip().lower()} from {ident}")


@keys_group.command("export")
@click.argument("ident")
@click.option("--format", "fmt", type=click.Choice(["p12", "pem", "openpgp"]), required=True)
@click.option("--secret", is_flag=True, help="Include the private key (always so for p12).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of standard output.")
@secret_options("password", "password that protects the exported private key")
@click.pass_context
def keys_export(ctx: click.Context, ident: str, fmt: ExportFormat, secret: bool, output: str | None,
                password: str | None, password_file: TextIO | None) -> None:
    """Export one key: certificate PEM, PKCS#12, or armored OpenPGP key.

    \b
    Examples:
      ciphermilter keys export 84386E32596E0994 --format pem > bob.pem
      ciphermilter keys export 84386E32596E0994 --format p12 --password-file p12.pass -o bob.p12
    """
    password = secret_value(password, password_file)
    if fmt == "p12" and password is None:
        password = required_secret(None, None, "PKCS#12 password")
    if secret and password is None:
        click.echo("warning: the private key is exported without a password: anyone who reads the file can"
                   " decrypt the mail encrypted to it (give --password-file to protect it)", err=True)
    with reported(StoreError):
        data = admin.export_key(command_store(ctx), ident, fmt, secret=secret, password=password)
    if output:
        write_private_file(output, data)
    elif fmt == "p12" and sys.stdout.isatty():
        fail("PKCS#12 is binary: give -o FILE")
    else:
        sys.stdout.buffer.write(data)  # click.get_binary_stream is deprecated since click 8.2
        sys.stdout.flush()

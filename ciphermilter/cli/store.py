"""Key management commands: ``store``, ``keys``, ``trust`` and ``domains``.

Each command runs as one store transaction: on any error it prints one line
on stderr, exits non-zero and leaves the store exactly as it was.
"""

from __future__ import annotations

import contextlib
import os
import sys

import click

from ciphermilter.store import keyimport

from ciphermilter.store import masterkey
from ciphermilter.cli.common import echo_json, echo_listing, fail, open_settings, open_store, reported, store_paths
from ciphermilter.store.keystore import ImportResult, KeyStore, StoreError

# ---------------------------------------------------------------------------- secrets from options


def _secret_options(name: str, what: str):
    """``--NAME TEXT`` and ``--NAME-file FILE`` (first line of the file)."""
    def decorate(command):
        command = click.option(f"--{name}-file", f"{name}_file", type=click.File("r", encoding="utf-8"),
                               help=f"Read the {what} from the first line of this file.")(command)
        return click.option(f"--{name}", name, metavar="TEXT",
                            help=f"The {what} (visible in the process list: prefer --{name}-file).")(command)
    return decorate


def _secret(value: str | None, file) -> str | None:
    if value is not None and file is not None:
        fail("give the secret as a value or as a file, not both")
    if file is not None:
        return file.readline().rstrip("\r\n")
    return value


def _interactive() -> bool:
    return sys.stdin.isatty()


def _required_secret(value: str | None, file, what: str) -> str:
    """A password that must be there: the option, else a prompt (interactive only), else an error."""
    secret = _secret(value, file)
    if secret is None and _interactive():
        secret = click.prompt(what.capitalize(), hide_input=True, confirmation_prompt=True)
    if not secret:
        fail(f"give the {what} (--password or --password-file)")
    return secret


PROGRESS_MIN_FILES = 5  # fewer files read too fast for a progress bar to help


def _progress(files):
    """A progress bar over many files, only for a person at a terminal: scripts get the same clean output."""
    if len(files) < PROGRESS_MIN_FILES or not sys.stderr.isatty():
        return contextlib.nullcontext(files)
    return click.progressbar(files, label="Reading keys", file=sys.stderr, item_show_func=lambda f: f and f.name)


def _report(result: ImportResult) -> None:
    for line in result.added:
        click.echo(f"added: {line}")
    for line in result.already_present:
        click.echo(f"already present: {line}")
    for line in result.warnings:
        click.echo(f"warning: {line}", err=True)


def _store(ctx: click.Context) -> KeyStore:
    store = open_store(ctx)
    ctx.call_on_close(store.close)
    return store


def _write_private_file(path: str, data: bytes) -> None:
    try:
        masterkey.write_private_file(path, data)
    except FileExistsError:
        fail(f"{path} exists already; refusing to overwrite it")
    except OSError as exc:
        fail(f"cannot create {path}: {exc.strerror}")


# ---------------------------------------------------------------------------- store


@click.group("store")
def store_group():
    """Create, inspect, back up and move the key store."""


@store_group.command("init")
@click.pass_context
def store_init(ctx):
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
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def store_info(ctx, as_json):
    """Show the store's location, schema version and contents.

    \b
    Examples:
      ciphermilter store info
      ciphermilter store info --json
    """
    store = _store(ctx)
    info = {**store.info(), "master_key": store_paths(ctx)[1],
            "integrity": store.integrity_check() or "ok"}
    if as_json:
        echo_json(info)
        return
    for name, value in info.items():
        if name == "counts":
            for table, count in value.items():
                click.echo(f"{table}: {count}")
        else:
            click.echo(f"{name}: {value}")


@store_group.command("backup")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_context
def store_backup(ctx, file):
    """Write a consistent copy of the store to FILE (safe while the milter runs).

    \b
    Examples:
      ciphermilter store backup /var/backups/ciphermilter.db
    """
    store = _store(ctx)
    with reported(StoreError):
        store.backup(file)
    click.echo(f"backup written to {file}")
    click.echo(f"it holds the private keys sealed with {store_paths(ctx)[1]}; that master key"
               " is NOT in the backup: keep a copy of it apart, you need it to restore")


@store_group.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--force", is_flag=True, help="Replace the contents of an existing store.")
@click.pass_context
def store_restore(ctx, file, force):
    """Replace the store with the backup FILE (the master key must be the one it was made with).

    \b
    Examples:
      ciphermilter store restore /var/backups/ciphermilter.db --force
    """
    store_path, key_path = store_paths(ctx)
    if os.path.exists(store_path) and not force:
        fail(f"store {store_path} exists: give --force to replace its contents with the backup")
    with reported(StoreError):
        KeyStore.restore(file, store_path, key_path).close()
    click.echo(f"restored {store_path} from {file}")


@store_group.command("export")
@click.argument("file", type=click.Path(dir_okay=False))
@_secret_options("password", "password that protects the exported private keys")
@click.pass_context
def store_export(ctx, file, password, password_file):
    """Write every key, certificate, trust anchor, domain and binding to FILE (JSON, private keys under a password).

    \b
    Examples:
      ciphermilter store export --password-file export.pass keys.json
    """
    password = _required_secret(password, password_file, "export password")
    store = _store(ctx)
    with reported(StoreError):
        data = store.export_all(password)
    _write_private_file(file, data)
    click.echo(f"exported to {file}")


@store_group.command("import")
@click.argument("file", type=click.File("rb"))
@_secret_options("password", "export password")
@click.pass_context
def store_import(ctx, file, password, password_file):
    """Read back a file written by 'store export'.

    \b
    Examples:
      ciphermilter store import --password-file export.pass keys.json
    """
    password = _secret(password, password_file)
    data = file.read()
    if password is None and _interactive():
        password = click.prompt("Export password", hide_input=True)
    store = _store(ctx)
    with reported(StoreError, prefix=f"{file.name}: "):
        _report(store.import_export(data, password))


# ---------------------------------------------------------------------------- keys


@click.group("keys")
def keys_group():
    """Import, list, show, export and remove certificates and keys."""


def _parse_with_prompts(name: str, data: bytes, password: str | None, passphrase: str | None):
    """Parse one file, asking for a missing password or passphrase when a person is at the terminal."""
    while True:
        try:
            return keyimport.parse(data, password=password.encode("utf-8") if password is not None else None,
                                   passphrase=passphrase), password, passphrase
        except keyimport.SecretNeeded as exc:
            if not _interactive():
                fail(f"{name}: {exc} (--{exc.kind} or --{exc.kind}-file)")
            answer = click.prompt(f"{name}: {exc.kind}", hide_input=True, err=True)
            password, passphrase = (answer, passphrase) if exc.kind == "password" else (password, answer)
        except keyimport.KeyFormatError as exc:
            fail(f"{name}: {exc}")


@keys_group.command("import")
@click.argument("files", nargs=-1, required=True, type=click.File("rb"))
@_secret_options("password", "PKCS#12 or private key password")
@_secret_options("passphrase", "OpenPGP secret key passphrase")
@click.pass_context
def keys_import(ctx, files, password, password_file, passphrase, passphrase_file):
    """Import certificates and keys: PKCS#12, PEM/DER certificates and keys, OpenPGP keys.

    All FILES are imported together or not at all; a private key needs its
    certificate in the same import or already in the store.

    \b
    Examples:
      ciphermilter keys import bob.p12 --password-file bob.pass
      ciphermilter keys import bob.cert.pem bob.key.pem
      ciphermilter keys import bob.sec.asc --passphrase-file bob.pp
    """
    password, passphrase = _secret(password, password_file), _secret(passphrase, passphrase_file)
    store = _store(ctx)
    named = []
    with _progress(files) as progress:
        for file in progress:
            bundle, password, passphrase = _parse_with_prompts(file.name, file.read(), password, passphrase)
            named.append((file.name, bundle))
    with reported(StoreError):
        _report(store.import_bundles(named))


def _key_summary(key: dict) -> str:
    readers = f"readers: {', '.join(key['readers']) or '-'}"
    if key["type"] == "x509":
        flags = "private key" if key["private_key"] else key["origin"]
        return f"{key['id'][:16]}  x509     {', '.join(key['emails']) or '-'}  [{flags}]  {readers}  {key['subject']}"
    flags = "secret" if key["secret"] else key["origin"]
    return f"{key['id'][:16]}  openpgp  {', '.join(key['emails']) or '-'}  [{flags}]  {readers}  {key['id']}"


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def keys_list(ctx, as_json):
    """List certificates and OpenPGP keys (ID, type, e-mail addresses, what we hold).

    \b
    Examples:
      ciphermilter keys list
      ciphermilter keys list --json
    """
    echo_listing(_store(ctx).list_keys(), as_json, _key_summary)


@keys_group.command("show")
@click.argument("ident")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def keys_show(ctx, ident, as_json):
    """Show one certificate or OpenPGP key (ID: 8 or more hex digits, or an OpenPGP key ID).

    \b
    Examples:
      ciphermilter keys show 84386E32596E0994
      ciphermilter keys show 8A351CCB200DA75B --json
    """
    with reported(StoreError):
        key = _store(ctx).show_key(ident)
    if key is None:
        fail(f"no key {ident}")
    if as_json:
        echo_json(key)
        return
    for name, value in key.items():
        click.echo(f"{name}: {', '.join(value) if isinstance(value, list) else value}")


@keys_group.command("remove")
@click.argument("ident")
@click.pass_context
def keys_remove(ctx, ident):
    """Remove a certificate (with its private key) or an OpenPGP key.

    \b
    Examples:
      ciphermilter keys remove 84386E32596E0994
    """
    with reported(StoreError):
        removed = _store(ctx).remove_key(ident)
    if not removed:
        fail(f"no key {ident}")
    click.echo(f"removed {ident}")


@keys_group.command("expire-harvested")
@click.option("--days", type=click.IntRange(min=0), default=None,
              help="Age in days (default: harvest_expiry_days of the configuration, 90).")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.pass_context
def keys_expire_harvested(ctx, days, dry_run):
    """Remove certificates and keys harvested from mail that were never used since, once older than the
    expiry age; what an administrator imported never expires. The daemon does this as it harvests.

    \b
    Examples:
      ciphermilter keys expire-harvested --dry-run
      ciphermilter keys expire-harvested --days 30
    """
    days = open_settings(ctx).harvest_expiry_days if days is None else days
    with reported(StoreError):
        removed = _store(ctx).expire_harvested(days, dry_run=dry_run)
    for line in removed:
        click.echo(f"{'would remove' if dry_run else 'removed'}: {line}")
    click.echo(f"{len(removed)} harvested certificates and keys (never used, harvested over {days} days ago)"
               f" {'would be' if dry_run else 'were'} removed")


@keys_group.command("bind")
@click.argument("ident")
@click.argument("address")
@click.pass_context
def keys_bind(ctx, ident, address):
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
        added = _store(ctx).bind(ident, address)
    click.echo(f"{'bound' if added else 'already bound'}: {address.strip().lower()} to {ident}")


@keys_group.command("unbind")
@click.argument("ident")
@click.argument("address")
@click.pass_context
def keys_unbind(ctx, ident, address):
    """Remove a binding that 'keys bind' added (a certificate's own addresses stay its readers).

    \b
    Examples:
      ciphermilter keys unbind 84386E32596E0994 team@example.com
    """
    with reported(StoreError):
        removed = _store(ctx).unbind(ident, address)
    if not removed:
        fail(f"{address} is not bound to {ident}")
    click.echo(f"unbound: {address.strip().lower()} from {ident}")


@keys_group.command("export")
@click.argument("ident")
@click.option("--format", "fmt", type=click.Choice(["p12", "pem", "openpgp"]), required=True)
@click.option("--secret", is_flag=True, help="Include the private key (always so for p12).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of standard output.")
@_secret_options("password", "password that protects the exported private key")
@click.pass_context
def keys_export(ctx, ident, fmt, secret, output, password, password_file):
    """Export one key: certificate PEM, PKCS#12, or armored OpenPGP key.

    \b
    Examples:
      ciphermilter keys export 84386E32596E0994 --format pem > bob.pem
      ciphermilter keys export 84386E32596E0994 --format p12 --password-file p12.pass -o bob.p12
    """
    password = _secret(password, password_file)
    if fmt == "p12" and password is None:
        password = _required_secret(None, None, "PKCS#12 password")
    with reported(StoreError):
        data = _store(ctx).export_key(ident, fmt, secret=secret, password=password)
    if output:
        _write_private_file(output, data)
    elif fmt == "p12" and sys.stdout.isatty():
        fail("PKCS#12 is binary: give -o FILE")
    else:
        click.get_binary_stream("stdout").write(data)


# ---------------------------------------------------------------------------- trust anchors


@click.group("trust")
def trust_group():
    """S/MIME trust anchors (root certificates)."""


@trust_group.command("add")
@click.argument("file", type=click.File("rb"))
@click.pass_context
def trust_add(ctx, file):
    """Trust every certificate in FILE (PEM or DER) as a root for S/MIME signatures.

    \b
    Examples:
      ciphermilter trust add root-ca.pem
    """
    with reported(keyimport.KeyFormatError, prefix=f"{file.name}: "):
        bundle = keyimport.parse(file.read())
    if bundle.private_keys or bundle.pgp_keys or not bundle.certificates:
        fail(f"{file.name}: a trust anchor file holds certificates only")
    with reported(StoreError, prefix=f"{file.name}: "):
        added = _store(ctx).add_trust_anchors(bundle.certificates)
    for subject, is_new in added:
        click.echo(f"{'added' if is_new else 'already present'}: trust anchor {subject}")


@trust_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def trust_list(ctx, as_json):
    """List the trust anchors.

    \b
    Examples:
      ciphermilter trust list --json
    """
    echo_listing(_store(ctx).list_trust_anchors(), as_json,
                 lambda anchor: f"{anchor['id'][:16]}  {anchor['subject']}  (until {anchor['not_after']})")


@trust_group.command("remove")
@click.argument("ident")
@click.pass_context
def trust_remove(ctx, ident):
    """Stop trusting an anchor (ID: 8 or more hex digits of its SHA-256 thumbprint).

    \b
    Examples:
      ciphermilter trust remove 3F2A9C10
    """
    with reported(StoreError):
        removed = _store(ctx).remove_trust_anchor(ident)
    if not removed:
        fail(f"no trust anchor {ident}")
    click.echo(f"removed trust anchor {ident}")


# ---------------------------------------------------------------------------- internal domains


@click.group("domains")
def domains_group():
    """Internal domains: mail to them is decrypted (example.com or *.example.com)."""


@domains_group.command("add")
@click.argument("domain")
@click.pass_context
def domains_add(ctx, domain):
    """Add an internal domain; *.example.com covers every subdomain of example.com.

    \b
    Examples:
      ciphermilter domains add example.com
      ciphermilter domains add '*.example.com'
    """
    with reported(StoreError):
        added = _store(ctx).add_domain(domain)
    click.echo(f"{'added' if added else 'already present'}: {domain}")


@domains_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def domains_list(ctx, as_json):
    """List the internal domains.

    \b
    Examples:
      ciphermilter domains list --json
    """
    echo_listing(_store(ctx).list_domains(), as_json, str)


@domains_group.command("remove")
@click.argument("domain")
@click.pass_context
def domains_remove(ctx, domain):
    """Remove an internal domain.

    \b
    Examples:
      ciphermilter domains remove example.com
    """
    with reported(StoreError):
        removed = _store(ctx).remove_domain(domain)
    if not removed:
        fail(f"no domain {domain}")
    click.echo(f"removed {domain}")

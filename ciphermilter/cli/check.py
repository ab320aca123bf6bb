"""``ciphermilter check``: is this installation ready to handle mail?

Every check is read-only (the store is opened read-only, Postfix is asked
through ``postconf``) and every problem becomes one :class:`Finding`: one
line that says what is wrong and what to do. The exit status is 0 only when
there is none, so the command fits in a deployment script or a monitoring
probe.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass

import click

from ciphermilter import config
from ciphermilter.cli.common import app, echo_json, json_option
from ciphermilter.core.settings import Settings
from ciphermilter.daemon import workers
from ciphermilter.formats.openpgp.keys import KeyPart, OpenPGPKey
from ciphermilter.formats.smime import trust
from ciphermilter.store import admin
from ciphermilter.store.keystore import KeyStore
from ciphermilter.store.schema import StoreError

EXPIRY_WARNING_DAYS = 30
SCANNERS = ("clamav", "rspamd", "spamass", "amavis")  # content scanners: must see the plaintext
DKIM_VERIFIERS = ("opendkim", "dkimpy", "opendmarc")  # must see the body as it arrived
# Milters on loopback TCP are named by their port only: the ports these listen on by default.
DEFAULT_PORTS = {"11332": "rspamd", "8891": "opendkim", "8893": "opendmarc"}
SAFE_DEFAULT_ACTIONS = ("tempfail", "reject")  # when ciphermilter is down, mail must not pass encrypted
REQUIRED_MILTER_PROTOCOL = 6
POSTCONF_TIMEOUT_S = 30
PRIVATE_MODE_BITS = 0o077  # group and other bits: the master key must have none
# The longest the milter may take to answer the final dot that a sending client is sure to wait for. RFC 5321
# (4.5.3.2.6) asks for 10 minutes, but real clients give up far sooner: Outlook's default server timeout is
# 1 minute, and the issue saw a client leave at 20 s. Postfix still delivers a message whose client left,
# and the client sends it again: the recipient gets it twice.
CLIENT_WAIT_S = 60.0
POSTFIX_TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass
class Finding:
    severity: str  # "error": mail is or will be mishandled; "warning": it will be soon, or it is risky
    area: str  # config, store, keys, trust, domains, postfix
    message: str  # what is wrong, and what to do

    def line(self) -> str:
        return f"{self.severity}: {self.area}: {self.message}"


class Report:
    def __init__(self) -> None:
        self.findings: list[Finding] = []
        self.checked: list[str] = []  # what was looked at, so that "all is well" says about what

    def error(self, area: str, message: str) -> None:
        self.findings.append(Finding("error", area, message))

    def warning(self, area: str, message: str) -> None:
        self.findings.append(Finding("warning", area, message))

    def as_dict(self) -> dict[str, object]:
        return {"ok": not self.findings, "checked": self.checked, "findings": [asdict(f) for f in self.findings]}


# --------------------------------------------------------------------------- configuration and store


def resolve_config(path: str | None, store: str | None, master_key: str | None,
                   report: Report) -> config.DaemonConfig | None:
    """The configuration as every command resolves it (:func:`config.resolve`), or the defaults with the
    command line's store after reporting why the file was refused; None when that store is unusable too."""
    if path is not None:
        report.checked.append(f"configuration {path}")
    try:
        return config.resolve(path, store, master_key)
    except config.ConfigError as exc:
        report.error("config", f"{exc}: fix the file; the daemon refuses to start with it")
    try:
        return config.resolve(None, store, master_key)
    except config.ConfigError as exc:  # the command line's store is unusable as well
        report.error("store", str(exc))
        return None


def open_store(store_path: str, key_path: str, report: Report) -> KeyStore | None:
    """The store opened read-only (schema version and master key checked by the store), or None."""
    try:
        store = KeyStore.open_read_only(store_path, key_path)
    except StoreError as exc:  # missing, not a store, a newer schema, the wrong master key
        report.checked.append(f"store {store_path}")
        report.error("store", f"{exc}")
        return None
    report.checked.append(f"store {store.path} (schema version {admin.info(store)['schema_version']})")
    server = admin.server(store)
    if server is not None:
        check_server(store.path, *server, report)
    problems = admin.integrity_check(store)
    if problems:
        report.error("store", f"{store_path} is damaged ({problems[0]}): restore it from a backup"
                              " ('ciphermilter store restore FILE --force')")
    check_master_key_mode(key_path, report)
    return store


def check_server(name: str, reached: str, writable: bool, report: Report) -> None:
    """Which PostgreSQL server the multi-host URL led to, and whether it takes the harvest's writes."""
    report.checked.append(f"store server {reached} ({'primary, writable' if writable else 'read-only'});"
                          " back it up with pg_dump or point-in-time recovery ('store backup' is for SQLite)")
    if not writable:
        report.error("store", f"{name} reached {reached}, which is read-only (a standby?): harvesting and every"
                              " CLI change fail; add target_session_attrs=read-write to the URL")


def check_master_key_mode(path: str, report: Report) -> None:
    mode = os.stat(path).st_mode  # the store opened with it, so it is there
    if mode & PRIVATE_MODE_BITS:
        report.warning("store", f"master key {path} is readable by others (mode {mode & 0o777:04o}):"
                                f" chmod 600 {path}")


def _utc(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def check_expiry(what: str, expires: datetime.datetime | None, now: datetime.datetime, report: Report) -> None:
    if expires is None:
        return
    expires = _utc(expires)
    day = expires.date().isoformat()
    if expires <= now:
        report.error("keys", f"{what} expired on {day}: mail encrypted to it can no longer be expected;"
                             " import its successor ('ciphermilter keys import') and remove it")
    elif expires - now <= datetime.timedelta(days=EXPIRY_WARNING_DAYS):
        report.warning("keys", f"{what} expires on {day}: get it renewed and import the new one"
                               " ('ciphermilter keys import')")


def part_expiry(part: KeyPart) -> datetime.datetime | None:
    """When an OpenPGP key or subkey expires: its newest self-signature's key expiration time (RFC 9580
    section 5.2.3.13), counted from the key's creation; a subkey's is in its binding signature."""
    if part.expires is None:
        return None
    return datetime.datetime.fromtimestamp(part.created + part.expires, datetime.timezone.utc)


def check_pgp_key(key: OpenPGPKey, now: datetime.datetime, report: Report) -> None:
    """Expiry, and what a message would otherwise find out: parts that make no usable key (issue 16)."""
    check_expiry(f"OpenPGP key {key.fingerprint}", part_expiry(key.primary), now, report)
    for part in key.subkeys:
        check_expiry(f"OpenPGP subkey {part.keyid} of {key.keyid}", part_expiry(part), now, report)
    for problem in key.unusable_parts():
        report.error("keys", f"OpenPGP key {key.fingerprint}: {problem}: messages to it cannot be decrypted;"
                             " remove it ('ciphermilter keys remove') and import a usable key")


def check_keys(store: KeyStore, settings: Settings, now: datetime.datetime, report: Report) -> None:
    """Our own keys (the ones we hold the private half of): expiry, and S/MIME trust chains."""
    report.checked.append("private keys")
    held = admin.list_keys(store)
    smime_keys, pgp_keys = store.all_smime_private_keys(), store.all_pgp_secret_keys()
    sealed = (sum(1 for k in held if k.get("private_key")), sum(1 for k in held if k.get("secret")))
    if sealed != (len(smime_keys), len(pgp_keys)):
        report.error("keys", f"{sum(sealed) - len(smime_keys) - len(pgp_keys)} private key(s) do not open with the"
                             " master key (altered in the store?): the log names them; import them again")
    anchors = store.trust_anchors()
    for der, _ in smime_keys:
        cert = trust.parse(der)
        if cert is None:
            continue
        who = f"S/MIME certificate {cert.x509.subject.rfc4514_string() or cert.x509.serial_number}"
        check_expiry(who, cert.x509.not_valid_after_utc, now, report)
        verdict = trust.evaluate(der, message_certificates=[], anchors=anchors, now=now,
                                 find_issuers=lambda key: store.certificates(subject_key=key),
                                 max_chain_length=settings.limits.max_chain_length)
        if anchors and not verdict.trusted and verdict.reason != "certificate expired":
            report.warning("trust", f"{who} is not trusted ({verdict.reason}): add the root of its CA with"
                                    " 'ciphermilter trust add ROOT.pem' so that replies signed with it verify")
    for key in pgp_keys:
        check_pgp_key(key, now, report)


def check_trust_anchors(store: KeyStore, now: datetime.datetime, report: Report) -> None:
    report.checked.append("trust anchors")
    anchors = admin.list_trust_anchors(store)
    if not anchors:
        report.warning("trust", "no S/MIME trust anchors: every signature will be reported Signer-Trusted: False;"
                                " add your CAs' roots with 'ciphermilter trust add ROOT.pem'")
    for anchor in anchors:
        expires = _utc(datetime.datetime.fromisoformat(anchor["not_after"]))
        if expires <= now:
            report.warning("trust", f"trust anchor {anchor['subject']} expired on {expires.date()}: signatures"
                                    " chaining to it are untrusted; add its successor, then"
                                    f" 'ciphermilter trust remove {anchor['id'][:16]}'")


def check_reader_rule(settings: Settings, report: Report) -> None:
    report.checked.append("reader rule")
    if not settings.require_reader:
        report.warning("readers", "require_reader is false: every internal recipient gets the plaintext of every"
                                  " stored key; bind keys to their readers with 'ciphermilter keys bind' instead")
    if settings.mixed_recipients != "split":
        report.warning("readers", f"mixed_recipients is {settings.mixed_recipients!r}: the external recipients of a"
                                  " transaction that also has internal ones receive its plaintext")


def verdict_seconds(settings: Settings) -> float:
    """The longest the milter takes to answer the final dot: the deadline, then the worker is killed."""
    return settings.limits.deadline_seconds + workers.DEADLINE_MARGIN


def check_deadline(settings: Settings, report: Report) -> None:
    report.checked.append("deadline")
    longest = verdict_seconds(settings)
    if longest > CLIENT_WAIT_S:
        report.warning("config", f"limits.deadline_seconds is {settings.limits.deadline_seconds:g}: a verdict may"
                                 f" take {longest:g} s, and SMTP clients that give up sooner than that (many do"
                                 f" after {CLIENT_WAIT_S:g} s) send the message again after Postfix delivered it;"
                                 f" keep it at most {CLIENT_WAIT_S - workers.DEADLINE_MARGIN:g}")


def check_content_timeout(timeout: str, settings: Settings, report: Report) -> None:
    """Postfix's milter_content_timeout must outlast our verdict, or Postfix applies default_action first."""
    match = re.fullmatch(r"(\d+)([smhdw]?)", timeout.strip())
    if not match:
        report.warning("postfix", f"milter_content_timeout = {timeout}: not a time ciphermilter understands")
        return
    seconds = int(match[1]) * POSTFIX_TIME_UNITS[match[2] or "s"]
    if verdict_seconds(settings) >= seconds:
        report.warning("postfix", f"milter_content_timeout = {timeout} is not above deadline_seconds"
                                  f" ({settings.limits.deadline_seconds:g}) + {workers.DEADLINE_MARGIN:g} s: Postfix"
                                  " may give up on a message before ciphermilter answers; raise it or lower the"
                                  " deadline")


def check_message_size(limit: str, settings: Settings, report: Report) -> None:
    """Decrypted content may be as large as max_message_size (contract.check_new_content); Postfix refuses a
    replaced body above its message_size_limit with a permanent 552 5.3.4, so ours must not be larger."""
    ours = settings.limits.max_message_size
    if limit.isdigit() and int(limit) > 0 and ours > int(limit):
        report.warning("postfix", f"message_size_limit = {limit} is below limits.max_message_size ({ours}): Postfix"
                                  " refuses a decrypted body larger than it with '552 5.3.4 message file too big';"
                                  f" set max_message_size = {limit}")


def check_domains(store: KeyStore | None, settings: Settings, report: Report) -> None:
    report.checked.append("internal domains")
    stored = admin.list_domains(store) if store is not None else []
    if not stored and not settings.internal_domains:
        report.error("domains", "no internal domain: no message will be decrypted; add yours with"
                                " 'ciphermilter domains add example.com' (or internal_domains in the configuration)")


# --------------------------------------------------------------------------- Postfix


@dataclass
class MilterEntry:
    socket: str
    default_action: str | None  # the entry's own default_action, None when it inherits milter_default_action
    spaced_options: bool = False  # "name = value": smtpd splits options at white space and refuses the entry
    content_timeout: str | None = None  # the entry's own content_timeout, None when it inherits the global one


def parse_milters(value: str) -> list[MilterEntry]:
    """Postfix's milter list: sockets separated by commas or white space, each optionally
    ``{ socket, name=value, ... }`` (Postfix 3.0+)."""
    entries = []
    for braced, plain in re.findall(r"\{([^}]*)\}|([^\s,{}]+)", value):
        if plain:
            entries.append(MilterEntry(plain, None))
            continue
        parts = [part.strip() for part in braced.split(",") if part.strip()]
        if not parts:
            continue
        options = dict(part.partition("=")[::2] for part in parts[1:])
        options = {name.strip(): option.strip() for name, option in options.items()}
        spaced = any(re.search(r"\s", part) for part in parts[1:])
        entries.append(MilterEntry(parts[0], options.get("default_action"), spaced, options.get("content_timeout")))
    return entries


def postfix_socket(milter_socket: str, queue_directory: str) -> str:
    """The daemon's socket spec as Postfix writes it, so that the two can be compared.

    A unix socket under the queue directory is named relative to it (what a
    chrooted smtpd needs); ``inet:PORT@HOST`` is ``inet:HOST:PORT`` in Postfix.
    """
    kind, _, rest = milter_socket.partition(":")
    if kind in ("unix", "local"):
        path = os.path.abspath(rest)  # a relative socket is relative to the daemon's directory
        queue = os.path.normpath(queue_directory)
        return "unix:" + (os.path.relpath(path, queue) if path.startswith(queue + os.sep) else path)
    port, _, host = rest.partition("@")
    return f"inet:{host or 'localhost'}:{port}"


def _same_socket(entry: str, expected: str, queue_directory: str) -> bool:
    kind, _, rest = entry.partition(":")
    if kind in ("unix", "local") and os.path.isabs(rest):
        entry = postfix_socket(entry, queue_directory)
    return entry == expected


def postconf(config_dir: str | None, names: list[str]) -> dict[str, str]:
    """Postfix's effective values (``$name`` expanded) of ``names``; OSError or ValueError with a reason."""
    command = [shutil.which("postconf") or "postconf"]
    if config_dir:
        command += ["-c", config_dir]
    # -h prints one line per value, in the order asked, a multi-line value joined into one
    result = subprocess.run([*command, "-x", "-h", *names], capture_output=True, text=True,
                            timeout=POSTCONF_TIMEOUT_S, check=False)
    lines = result.stdout.splitlines()
    if result.returncode != 0 or len(lines) != len(names):
        fatal = [line for line in result.stderr.splitlines() if "fatal" in line] or result.stderr.splitlines()
        raise ValueError(fatal[-1] if fatal else f"postconf exited with status {result.returncode}")
    return dict(zip(names, (line.strip() for line in lines), strict=True))


def check_postfix(config_dir: str | None, milter_socket: str, settings: Settings, report: Report) -> None:
    where = config_dir or "the default Postfix configuration"
    report.checked.append(f"Postfix ({where})")
    try:
        values = postconf(config_dir, ["smtpd_milters", "milter_default_action", "milter_protocol",
                                       "queue_directory", "milter_content_timeout", "message_size_limit"])
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        report.error("postfix", f"cannot read Postfix's settings: {exc}; give --postfix-config DIR, or"
                                " --no-postfix where Postfix runs on another host")
        return
    entries = parse_milters(values["smtpd_milters"])
    expected = postfix_socket(milter_socket, values["queue_directory"])
    position = next((i for i, e in enumerate(entries) if _same_socket(e.socket, expected, values["queue_directory"])),
                    None)
    if position is None:
        report.error("postfix", f"ciphermilter ({expected}) is not in smtpd_milters: add"
                                f" '{{ {expected}, default_action=tempfail }}' before the content scanners")
    else:
        check_order(entries, position, report)
        check_default_action(entries[position], values["milter_default_action"], report)
        check_content_timeout(entries[position].content_timeout or values["milter_content_timeout"], settings,
                              report)
    check_message_size(values["message_size_limit"], settings, report)
    for entry in entries:
        if entry.spaced_options:
            report.error("postfix", f"smtpd_milters entry {entry.socket}: write its options as name=value without"
                                    " spaces; Postfix splits them at white space and smtpd then refuses every"
                                    " connection (fatal: malformed option)")
    if values["milter_protocol"].isdigit() and int(values["milter_protocol"]) < REQUIRED_MILTER_PROTOCOL:
        report.error("postfix", f"milter_protocol = {values['milter_protocol']}: ciphermilter needs"
                                f" {REQUIRED_MILTER_PROTOCOL}; set milter_protocol = {REQUIRED_MILTER_PROTOCOL}")


def _is_one_of(socket: str, names: tuple[str, ...]) -> str | None:
    """Which of ``names`` the socket belongs to, from its path or its well-known port."""
    lowered = socket.lower()
    port = DEFAULT_PORTS.get(lowered.rpartition(":")[2]) if lowered.startswith("inet") else None
    return next((name for name in names if name in lowered or name == port), None)


def check_order(entries: list[MilterEntry], position: int, report: Report) -> None:
    for entry in entries[:position]:
        scanner = _is_one_of(entry.socket, SCANNERS)
        if scanner:
            report.error("postfix", f"{scanner} ({entry.socket}) runs before ciphermilter and scans ciphertext:"
                                    " move ciphermilter before it in smtpd_milters")
    for entry in entries[position + 1:]:
        verifier = _is_one_of(entry.socket, DKIM_VERIFIERS)
        if verifier:
            report.error("postfix", f"{verifier} ({entry.socket}) runs after ciphermilter and sees the decrypted"
                                    " body, so DKIM signatures fail: move it before ciphermilter in smtpd_milters")


def check_default_action(entry: MilterEntry, global_action: str, report: Report) -> None:
    action = entry.default_action or global_action
    if action not in SAFE_DEFAULT_ACTIONS:
        source = "its default_action" if entry.default_action else "milter_default_action"
        report.error("postfix", f"{source} is '{action}': while ciphermilter is down, mail passes encrypted"
                                f" past the scanners; write '{{ {entry.socket}, default_action=tempfail }}'")


# --------------------------------------------------------------------------- the command


def run_checks(config_path: str | None, store_override: str | None, key_override: str | None,
               postfix_dir: str | None, with_postfix: bool, now: datetime.datetime | None = None) -> Report:
    report = Report()
    now = now or datetime.datetime.now(datetime.timezone.utc)
    configured = resolve_config(config_path, store_override, key_override, report)
    if configured is None:
        return report
    check_reader_rule(configured.settings, report)
    check_deadline(configured.settings, report)
    store = open_store(configured.store, configured.master_key_path, report)
    if store is not None:
        try:
            check_keys(store, configured.settings, now, report)
            check_trust_anchors(store, now, report)
            check_domains(store, configured.settings, report)
        finally:
            store.close()
    else:
        check_domains(None, configured.settings, report)
    if with_postfix:
        check_postfix(postfix_dir, configured.socket, configured.settings, report)
    return report


@click.command("check")
@click.option("--postfix-config", "postfix_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Postfix configuration directory to read with 'postconf -c DIR' (default: Postfix's own).")
@click.option("--postfix/--no-postfix", "with_postfix", default=True, show_default=True,
              help="Check Postfix's milter settings (turn off where Postfix runs on another host).")
@json_option
@click.pass_context
def check(ctx: click.Context, postfix_dir: str | None, with_postfix: bool, as_json: bool) -> None:
    """Check the configuration, the key store, the keys and Postfix's milter chain.

    Every problem is one line saying what to do. Exit status 0 only when there
    is none, 1 otherwise.

    \b
    Examples:
      ciphermilter --config /etc/ciphermilter/ciphermilter.toml check
      ciphermilter check --postfix-config /etc/postfix-in --json
      ciphermilter --store var/ciphermilter.db check --no-postfix
    """
    options = app(ctx)
    report = run_checks(options.config_path, options.store_path, options.master_key_path, postfix_dir, with_postfix)
    if as_json:
        echo_json(report.as_dict())
    else:
        for finding in report.findings:
            colour = "red" if finding.severity == "error" else "yellow"
            click.echo(click.style(finding.severity, fg=colour) + finding.line()[len(finding.severity):])
        if not report.findings:
            click.echo(f"all is well: {', '.join(report.checked)}")
    ctx.exit(0 if not report.findings else 1)


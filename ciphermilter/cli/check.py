"""``ciphermilter check``: is this installation ready to handle mail?

Every check is read-only (the store is opened read-only, Postfix is asked
through ``postconf``) and every problem becomes one :class:`Finding`: one
line that says what is wrong and what to do. The exit status is 0 only when
there is none, so the command fits in a deployment script or a monitoring
probe.
"""

from __future__ import annotations

import datetime
import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any, Callable

import click
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID

from ciphermilter import config
from ciphermilter.cli.common import app, echo_json, json_option
from ciphermilter.core.settings import Settings
from ciphermilter.daemon import probe, workers
from ciphermilter.formats.openpgp.keys import KeyPart, OpenPGPKey
from ciphermilter.formats.smime import trust
from ciphermilter.formats.smime.recipients import AGREEMENT_KEYS
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
    check_master_key_mode(key_path, report)
    if problems:  # one root cause, one error: what a damaged store lacks is not reported as missing
        report.error("store", f"{store_path} is damaged ({problems[0]}): restore it from a backup"
                              " ('ciphermilter store restore FILE --force')")
        store.close()
        return None
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
    if not store.holds_private_keys():
        report.warning("keys", "no private key: no message will be decrypted; import yours with"
                               " 'ciphermilter keys import FILE'")
    held = admin.list_keys(store)
    smime_keys, pgp_keys = store.all_smime_private_keys(), store.all_pgp_secret_keys()
    sealed = tuple(sum(1 for k in held if k["type"] == kind and k["private_key"]) for kind in ("x509", "openpgp"))
    if sealed != (len(smime_keys), len(pgp_keys)):
        report.error("keys", f"{sum(sealed) - len(smime_keys) - len(pgp_keys)} private key(s) do not open with the"
                             " master key (altered in the store?): the log names them; import them again")
    anchors = store.trust_anchors()
    for der, private_key in smime_keys:
        cert = trust.parse(der)
        if cert is None:
            continue
        who = f"S/MIME certificate {cert.x509.subject.rfc4514_string() or cert.x509.serial_number}"
        check_expiry(who, cert.x509.not_valid_after_utc, now, report)
        for problem in smime_key_problems(cert.x509, private_key):
            report.error("keys", f"{who}: {problem}: messages to it cannot be decrypted; remove it"
                                 " ('ciphermilter keys remove') and import a certificate issued for e-mail encryption")
        verdict = trust.evaluate(der, message_certificates=[], anchors=anchors, now=now,
                                 find_issuers=lambda key: store.certificates(subject_key=key),
                                 max_chain_length=settings.limits.max_chain_length)
        if anchors and not verdict.trusted and verdict.reason != "certificate expired":
            report.warning("trust", f"{who} is not trusted ({verdict.reason}): add the root of its CA with"
                                    " 'ciphermilter trust add ROOT.pem' so that replies signed with it verify")
    for key in pgp_keys:
        check_pgp_key(key, now, report)


def smime_key_problems(certificate: x509.Certificate, key: PrivateKeyTypes) -> list[str]:
    """Why this key never decrypts: an algorithm that cannot (DSA, EdDSA sign only), or a certificate that tells
    senders not to encrypt to it (key usage, RFC 8550 section 4.4.2; extended key usage, RFC 5280 4.2.1.12)."""
    if isinstance(key, rsa.RSAPrivateKey):
        needed = "key_encipherment"
    elif isinstance(key, AGREEMENT_KEYS):
        needed = "key_agreement"
    else:
        return [f"{type(key).__name__.removesuffix('PrivateKey')} keys sign only"]
    problems = []
    extensions = {type(extension.value): extension.value for extension in certificate.extensions}
    usage = extensions.get(x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage) and not getattr(usage, needed):
        problems.append(f"its key usage lacks {'keyEncipherment' if needed == 'key_encipherment' else 'keyAgreement'}")
    purposes = extensions.get(x509.ExtendedKeyUsage)
    if isinstance(purposes, x509.ExtendedKeyUsage) and not {ExtendedKeyUsageOID.EMAIL_PROTECTION,
                                                             ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE} & set(purposes):
        problems.append("its extended key usage lacks emailProtection")
    return problems


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


def check_domains(store: KeyStore, settings: Settings, report: Report) -> None:
    report.checked.append("internal domains")
    stored = admin.list_domains(store)
    if not stored and not settings.internal_domains:
        report.error("domains", "no internal domain: no message will be decrypted; add yours with"
                                " 'ciphermilter domains add example.com' (or internal_domains in the configuration)")


# --------------------------------------------------------------------------- the daemon


def check_installation(user: str | None, group: str | None, report: Report) -> None:
    """Can the daemon's user start the worker processes? Tested as that user when we are root (issue 17: a
    clone under /root, mode 0700, made every message "Not-Processed: internal error")."""
    if user is None or os.geteuid() != 0:
        report.checked.append("installation")
        blocked = workers.unreachable_installation()
    else:
        report.checked.append(f"installation (as user {user})")
        blocked = _unreachable_for(user, group)
    if blocked:
        report.error("daemon", f"the daemon's worker processes cannot start: {blocked}; let its user read the"
                               " installation (and enter the directories on the way), or install it elsewhere")


def _unreachable_for(user: str, group: str | None) -> str | None:
    """:func:`workers.unreachable_installation` in a process of ``user`` (and ``group``), or why none started."""
    probe = "from ciphermilter.daemon.workers import unreachable_installation as u; print(u() or '')"
    try:
        gid = grp.getgrnam(group).gr_gid if group else pwd.getpwnam(user).pw_gid
    except KeyError:
        return f"there is no user {user} or group {group}"
    try:
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd="/",
                                user=user, group=gid, extra_groups=[], timeout=POSTCONF_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"user {user} cannot run {sys.executable} ({getattr(exc, 'strerror', None) or exc})"
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        return f"user {user} cannot import ciphermilter ({lines[-1] if lines else result.returncode})"
    return result.stdout.strip() or None


def check_daemon(socket_spec: str, report: Report) -> None:
    """A socket file proves nothing (a killed daemon leaves it behind): a milter must answer on it."""
    report.checked.append(f"daemon ({socket_spec})")
    reason = probe.negotiate(socket_spec)
    if reason:
        report.error("daemon", f"{reason}: start the daemon ('systemctl start ciphermilter'); until then Postfix"
                               " answers every message with 4xx (default_action=tempfail)")


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
    if entry == expected:
        return True
    if not (kind.startswith("inet") and expected.startswith("inet")):
        return False
    # inet:localhost:PORT is our inet:PORT@127.0.0.1: names resolved, one address in common is the same socket
    return bool(probe.resolved(probe.address(entry)) & probe.resolved(probe.address(expected)))


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
                                       "queue_directory", "milter_content_timeout", "message_size_limit",
                                       "mail_owner"])
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
        check_socket_access(milter_socket, values["mail_owner"], report)
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


def check_socket_access(milter_socket: str, owner: str, report: Report) -> None:
    """Postfix's smtpd and cleanup run as ``mail_owner``: it must enter every directory on the way to a unix
    socket and write the socket (connect(2) needs both); the group is the documented way (adduser postfix G)."""
    path = probe.address(milter_socket).path
    if path is None:
        return
    try:
        account = pwd.getpwnam(owner)
    except KeyError:
        report.error("postfix", f"mail_owner {owner} is not a user of this host")
        return
    groups = {account.pw_gid, *(g.gr_gid for g in grp.getgrall() if owner in g.gr_mem)}
    path = os.path.abspath(path)
    steps = [(directory, 0o1) for directory in workers.directories_on_the_way(path)] + [(path, 0o2)]
    for step, bit in steps:
        try:
            info = os.stat(step)
        except FileNotFoundError:
            return  # no socket yet: check_daemon says so
        except OSError:
            continue
        if not _permits(info, account.pw_uid, groups, bit):
            owner_group = f"{_name(pwd.getpwuid, info.st_uid)}:{_name(grp.getgrgid, info.st_gid)}"
            report.error("postfix", f"Postfix's user {owner} cannot reach the milter socket: {step} is mode"
                                    f" {info.st_mode & 0o777:04o} {owner_group}; add {owner} to that group"
                                    f" ('adduser {owner} {_name(grp.getgrgid, info.st_gid)}') and give the group"
                                    f" {'search' if bit == 0o1 else 'write'} permission")
            return


def _permits(info: os.stat_result, uid: int, groups: set[int], bit: int) -> bool:
    """Whether the user passes the owner, group or other bits (the first class that applies, as the kernel)."""
    if uid == 0:
        return True
    if info.st_uid == uid:
        return bool(info.st_mode & (bit << 6))
    if info.st_gid in groups:
        return bool(info.st_mode & (bit << 3))
    return bool(info.st_mode & bit)


def _name(lookup: Callable[[int], Any], number: int) -> str:
    try:
        return str(lookup(number)[0])
    except KeyError:
        return str(number)


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
               postfix_dir: str | None, with_postfix: bool, now: datetime.datetime | None = None,
               with_daemon: bool = False) -> Report:
    report = Report()
    now = now or datetime.datetime.now(datetime.timezone.utc)
    configured = resolve_config(config_path, store_override, key_override, report)
    if configured is None:
        return report
    check_reader_rule(configured.settings, report)
    check_deadline(configured.settings, report)
    store = open_store(configured.store, configured.master_key_path, report)
    if store is not None:  # a store that did not open is one error, not also "no domain" and "no key"
        try:
            check_keys(store, configured.settings, now, report)
            check_trust_anchors(store, now, report)
            check_domains(store, configured.settings, report)
        finally:
            store.close()
    check_installation(configured.user, configured.group, report)
    if with_daemon:
        check_daemon(configured.socket, report)
    if with_postfix:
        check_postfix(postfix_dir, configured.socket, configured.settings, report)
    return report


@click.command("check")
@click.option("--postfix-config", "postfix_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Postfix configuration directory to read with 'postconf -c DIR' (default: Postfix's own).")
@click.option("--postfix/--no-postfix", "with_postfix", default=True, show_default=True,
              help="Check Postfix's milter settings (turn off where Postfix runs on another host).")
@click.option("--daemon/--no-daemon", "with_daemon", default=True, show_default=True,
              help="Check that a daemon answers on the configured socket (turn off before its first start).")
@json_option
@click.pass_context
def check(ctx: click.Context, postfix_dir: str | None, with_postfix: bool, with_daemon: bool, as_json: bool) -> None:
    """Check the configuration, the key store, the keys, the running daemon and Postfix's milter chain.

    Every problem is one line saying what to do. Exit status 0 only when there
    is none, 1 otherwise.

    \b
    Examples:
      ciphermilter --config /etc/ciphermilter/ciphermilter.toml check
      ciphermilter check --postfix-config /etc/postfix-in --json
      ciphermilter --store var/ciphermilter.db check --no-postfix --no-daemon
    """
    options = app(ctx)
    report = run_checks(options.config_path, options.store_path, options.master_key_path, postfix_dir, with_postfix,
                        with_daemon=with_daemon)
    if as_json:
        echo_json(report.as_dict())
    else:
        for finding in report.findings:
            colour = "red" if finding.severity == "error" else "yellow"
            click.echo(click.style(finding.severity, fg=colour) + finding.line()[len(finding.severity):])
        if not report.findings:
            click.echo(f"all is well: {', '.join(report.checked)}")
    ctx.exit(0 if not report.findings else 1)


"""The daemon's configuration file: :class:`DaemonConfig` and its TOML loader.

The core's own knobs (:class:`~ciphermilter.core.settings.Settings`,
:class:`~ciphermilter.core.settings.Limits`) live in the core, which must
not import this module; a :class:`DaemonConfig` carries them. Loading and
validating the file lives here, so that the CLI and the daemon refuse the
same mistakes, each with file, line and reason.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import NoReturn

from ciphermilter import files
from ciphermilter.core import domains
from ciphermilter.core.settings import MIXED_RECIPIENTS, ON_ERROR_POLICIES, ON_LIMIT_POLICIES, Limits, Settings
from ciphermilter.store import locator, masterkey


# --- The daemon's configuration file -------------------------------------------------------------

DEFAULT_SOCKET = "unix:./var/ciphermilter.sock"
DEFAULT_STORE = "var/ciphermilter.db"
LOG_LEVELS = ("debug", "info", "warning", "error")
# A check of one value of the file: the value to store, or ValueError saying why it is refused.
Check = Callable[[object], object]
_SOCKET = re.compile(r"(?:(?:unix|local):(?P<path>.+)|inet6?:(?P<port>\d{1,5})(?:@(?P<host>[^@\s]+))?)\Z")


class ConfigError(ValueError):
    """The configuration file is unreadable or holds an unknown key or a bad value (with file and line)."""


@dataclass
class DaemonConfig:
    """Everything ``ciphermilter run`` needs: where to listen, which store, whom to run as, and the core's Settings."""

    socket: str = DEFAULT_SOCKET
    store: str = DEFAULT_STORE
    master_key: str | None = None  # default: the store path plus ".key"
    user: str | None = None  # drop to this user after opening the store (when started as root)
    group: str | None = None  # default: the user's primary group
    umask: int = 0o007  # socket mode 0660: the group (Postfix's) may connect, others may not
    pid_file: str | None = None
    log_level: str = "info"
    spool_memory: int = 1024 * 1024  # bytes of body kept in memory before spooling to a 0600 temp file
    milter_timeout: int = 600  # seconds libmilter waits on a silent MTA before dropping the connection
    workers: int | None = None  # processes that decrypt (past the GIL); default one per CPU core
    stats_file: str | None = None  # counters for `ciphermilter stats`; default: beside the store
    stats_interval: float = 10.0  # seconds between two writes of the stats file
    prometheus_textfile: str | None = None  # also write the counters here (node_exporter's textfile collector)
    metrics_port: int | None = None  # also serve /metrics on 127.0.0.1:PORT
    settings: Settings = field(default_factory=Settings)

    @property
    def worker_count(self) -> int:
        """``workers``, else one per CPU this process may run on (taskset and cgroups narrow that)."""
        return self.workers or len(os.sched_getaffinity(0))

    @property
    def master_key_path(self) -> str:
        """``master_key``, else beside a SQLite store (a shared store names its key: :func:`check_store`)."""
        return self.master_key or masterkey.default_path(self.store)

    @property
    def stats_path(self) -> str:
        """``stats_file``, else beside a SQLite store; a shared store has no "beside": ConfigError."""
        if self.stats_file:
            return self.stats_file
        if locator.names_shared(self.store):
            raise ConfigError(f"store {locator.redacted(self.store)}: a PostgreSQL store needs stats_file named"
                              " in the configuration (statistics stay per gateway)")
        return files.default_stats_file(self.store)

    def with_store(self, store: str | None, master_key: str | None) -> "DaemonConfig":
        """This configuration with the store and master key named on the command line, where they are.

        A store named there comes with its own key beside it (STORE.key):
        the configured ``master_key`` belongs to the configured store. Every
        command, the daemon included, resolves the two paths this one way.
        """
        own_key = None if store else self.master_key
        resolved = replace(self, store=store or self.store, master_key=master_key or own_key)
        problem = store_problem(resolved.store, resolved.master_key)
        if problem:
            raise ConfigError(f"{'--store' if store else 'store'}: {problem}")
        return resolved


def store_problem(store: str, master_key: str | None) -> str | None:
    """Why ``store`` cannot be used with ``master_key``: a URL of no backend we have, or a shared store whose
    master key is not named (no file is beside a database; every gateway holds a copy of the one key)."""
    try:
        where = locator.parse(store)
    except locator.LocatorError as exc:
        return str(exc)
    if where.shared and not master_key:
        return (f"store {where.display}: a PostgreSQL store needs its master key file named"
                " (master_key in the configuration, or --master-key)")
    return None


def _check_socket(value: object) -> str:
    match = _SOCKET.match(value) if isinstance(value, str) else None
    if not match or (match["port"] is not None and not 0 < int(match["port"]) < 65536):
        raise ValueError("must be unix:/path/to/socket or inet:PORT@HOST")
    return match.string


def _check_umask(value: object) -> int:
    if isinstance(value, str) and re.fullmatch(r"0?[0-7]{1,3}", value):
        value = int(value, 8)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        raise ValueError('must be an octal mode such as "0007" or 0o007')
    return value


def _check_choice(choices: tuple[str, ...]) -> Check:
    def check(value: object) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value
    return check


def _check_store(value: object) -> str:
    """A file path, ``sqlite:///path`` or ``postgresql://…`` (:mod:`ciphermilter.store.locator`)."""
    try:
        locator.parse(_check_path(value))
    except locator.LocatorError as exc:
        raise ValueError(str(exc).split(": ", 1)[1]) from None
    return str(value)


def _check_path(value: object) -> str:
    if not isinstance(value, str) or not value or "\0" in value:
        raise ValueError("must be a non-empty path")
    return value


def _check_name(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", value):
        raise ValueError("must be a user or group name")
    return value


def _check_positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _check_positive_number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError("must be a positive number")
    return float(value)


def _check_port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ValueError("must be a TCP port (1-65535)")
    return value


# Keys of the file that are not Settings fields, with the check each value must pass.
DAEMON_KEYS: dict[str, Check] = {
    "socket": _check_socket,
    "store": _check_store,
    "master_key": _check_path,
    "user": _check_name,
    "group": _check_name,
    "umask": _check_umask,
    "pid_file": _check_path,
    "log_level": _check_choice(LOG_LEVELS),
    "spool_memory": _check_positive_int,
    "milter_timeout": _check_positive_int,
    "workers": _check_positive_int,
    "stats_file": _check_path,
    "stats_interval": _check_positive_number,
    "prometheus_textfile": _check_path,
    "metrics_port": _check_port,
}


def _check_setting(name: str, value: object, default: object) -> object:
    """Check a Settings or Limits value against the type of its default."""
    if name == "on_error":
        return _check_choice(ON_ERROR_POLICIES)(value)
    if name == "on_limit":
        return _check_choice(ON_LIMIT_POLICIES)(value)
    if name == "mixed_recipients":
        return _check_choice(MIXED_RECIPIENTS)(value)
    if name == "recipient_delimiter":
        return _check_delimiter(value)
    if name == "max_decompressed_size":  # its default (None) is derived from max_message_size
        return _check_positive_int(value)
    if name == "internal_domains":
        if not isinstance(value, list):
            raise ValueError("must be a list of domain names")
        try:
            return [domains.normalise(d) if isinstance(d, str) else _not_a_domain(d) for d in value]
        except domains.DomainError as exc:
            raise ValueError(str(exc)) from None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if isinstance(default, int):
        return _check_positive_int(value)
    if isinstance(default, float):
        return _check_positive_number(value)
    raise ValueError(f"unsupported setting {name}")  # a new Settings field needs a check here


def _check_delimiter(value: object) -> str:
    """Postfix's recipient_delimiter: characters that may start an address extension, or empty for none."""
    if not isinstance(value, str) or any(not c.isprintable() or c.isspace() or c in '@<>"' for c in value):
        raise ValueError('must be a string of delimiter characters such as "+" or "+-" (empty: none)')
    return value


def _not_a_domain(value: object) -> NoReturn:
    raise domains.DomainError(f"not a domain name: {value!r}")


def _key_line(lines: list[str], table: str | None, key: str) -> int | None:
    """1-based line of ``key`` in ``[table]`` (None: top level), or of the ``[key]`` table header."""
    current = None
    key_pattern = re.compile(r'\s*(?:"%s"|\'%s\'|%s)\s*=' % ((re.escape(key),) * 3))
    table_pattern = re.compile(r"\s*\[\s*([^\]\s]+)\s*\]")
    for number, line in enumerate(lines, 1):
        header = table_pattern.match(line)
        if header:
            current = header.group(1).strip("\"'")
            if table is None and current == key:
                return number
        elif current == table and key_pattern.match(line):
            return number
    return None


def _flatten(data: dict[str, object]) -> Iterator[tuple[str | None, str, object]]:
    """(table, key, value) for every top-level key and every key of the [limits] table."""
    for key, value in data.items():
        if key == "limits" and isinstance(value, dict):
            yield from (("limits", limit, limit_value) for limit, limit_value in value.items())
        else:
            yield None, key, value


def _apply(config: DaemonConfig, table: str | None, key: str, value: object) -> None:
    """Check one value and store it in ``config``; ValueError says why it is refused."""
    if table is None and key == "limits":
        raise ValueError("must be a table: [limits]")
    target: Limits | Settings
    if table == "limits":
        target = config.settings.limits
    elif key in DAEMON_KEYS:
        setattr(config, key, DAEMON_KEYS[key](value))
        return
    else:
        target = config.settings
    known = {f.name for f in fields(target)} - {"limits"}
    if key not in known:
        raise ValueError("unknown key")
    setattr(target, key, _check_setting(key, value, getattr(target, key)))


def resolve(path: str | None, store: str | None, master_key: str | None) -> DaemonConfig:
    """The file at ``path`` (the defaults without one) with the store and master key named on the command
    line (:meth:`DaemonConfig.with_store`): how every command, the daemon included, finds its store."""
    return load(path).with_store(store, master_key)


def load(path: str | None) -> DaemonConfig:
    """Read and validate the TOML file at ``path``; ``None`` gives the embedded defaults.

    Every mistake is refused with ``file:line: reason``: tomllib reports
    syntax errors with a position but knows nothing of our keys, so the line
    of a bad key is looked up in the text.
    """
    config = DaemonConfig()
    if path is None:
        return config
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    lines = text.splitlines()

    def refuse(table: str | None, key: str, reason: str) -> NoReturn:
        line = _key_line(lines, table, key)
        where = f"{path}:{line}" if line else path
        name = f"{table}.{key}" if table else key
        raise ConfigError(f"{where}: {name}: {reason}") from None

    for table, key, value in _flatten(data):
        try:
            _apply(config, table, key, value)
        except ValueError as exc:
            refuse(table, key, str(exc))
    if locator.names_shared(config.store) and not config.master_key:
        refuse(None, "store", "a PostgreSQL store needs master_key named (every gateway holds a copy of the one key)")
    return config

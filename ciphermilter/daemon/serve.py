"""Serving the milter daemon (``ciphermilter run``; the click command is cli/run.py).

Start-up order matters: read the configuration (refusing mistakes before
anything else happens), set up logging, open the key store, create the
socket directory and the pid file, set the umask, drop root privileges, and
only then serve. libmilter owns the signals (SIGTERM, SIGINT and SIGHUP all
stop it), so changes to the store are picked up without a restart by
:class:`~ciphermilter.store.holder.StoreHolder`, not by a reload signal.
"""

from __future__ import annotations

import grp
import logging
import logging.handlers
import os
import pwd
import signal
import sys

import milter as libmilter
import Milter

from ciphermilter import files

from ciphermilter.daemon import milter

from ciphermilter.daemon import stats

from ciphermilter.daemon import workers
from ciphermilter.config import ConfigError, DaemonConfig
from ciphermilter.store.holder import StoreHolder, StoreUnavailable

log = logging.getLogger(__name__)
SYSLOG_SOCKET = "/dev/log"
MILTER_NAME = "ciphermilter"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)  # each one stops libmilter


class ServeError(Exception):
    """libmilter could not serve on the configured socket; the CLI reports it in one line."""


def setup_logging(level: str, stderr: bool, syslog_socket: str = SYSLOG_SOCKET) -> None:
    """Syslog facility mail (where Postfix logs too) and, in the foreground, stderr; tracebacks included."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level.upper())
    if os.path.exists(syslog_socket):
        syslog = logging.handlers.SysLogHandler(syslog_socket, facility=logging.handlers.SysLogHandler.LOG_MAIL)
        syslog.setFormatter(logging.Formatter(f"{MILTER_NAME}[%(process)d]: %(levelname)s %(message)s"))
        root.addHandler(syslog)
    if stderr or not root.handlers:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root.addHandler(console)


def unix_socket_path(spec: str) -> str | None:
    """The file of a ``unix:``/``local:`` socket spec, None for inet."""
    kind, _, rest = spec.partition(":")
    return rest if kind in ("unix", "local") else None


def account(config: DaemonConfig) -> tuple[int, int] | None:
    """uid and gid to drop to, or None when no user is configured."""
    if not config.user:
        return None
    try:
        user = pwd.getpwnam(config.user)
        gid = grp.getgrnam(config.group).gr_gid if config.group else user.pw_gid
    except KeyError as exc:
        raise ConfigError(f"unknown user or group: {exc.args[0]}") from None
    return user.pw_uid, gid


def prepare_directory(path: str, ids: tuple[int, int] | None) -> None:
    """Create the directory of the socket or pid file (mode 0750, owned by the milter user) if missing.

    An existing directory is left as it is: it may be shared (/run) and its
    owner chose its mode. Postfix's user reaches the socket through the group.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(directory):
        return
    os.makedirs(directory, mode=0o750)
    if ids is not None and os.geteuid() == 0:
        os.chown(directory, *ids)


def write_pid_file(path: str, ids: tuple[int, int] | None) -> None:
    """Mode 0600 (root and the daemon's user read it), written before the daemon's own umask is set."""
    prepare_directory(path, ids)
    files.write_atomically(path, f"{os.getpid()}\n")
    if ids is not None and os.geteuid() == 0:
        os.chown(path, *ids)  # so that the unprivileged daemon can remove it at exit


def drop_privileges(ids: tuple[int, int] | None, user: str | None) -> None:
    if os.geteuid() != 0:
        return
    if ids is None or user is None:  # account() gives ids only for a configured user
        log.warning("running as root: set user (and group) in the configuration file")
        return
    uid, gid = ids
    os.setgroups([])
    os.initgroups(user, gid)
    os.setgid(gid)
    os.setuid(uid)
    log.info("running as uid %d gid %d", uid, gid)


def start_exporter(config: DaemonConfig, holder: StoreHolder) -> stats.Exporter | None:
    """Write the counters for ``ciphermilter stats`` (as the milter user); a failure here never stops the mail."""
    exporter = stats.Exporter(stats.COUNTERS_OF_THIS_PROCESS, config.stats_path, config.stats_interval,
                              config.prometheus_textfile, config.metrics_port, stats.StoreProbe(holder))
    try:
        exporter.start()
    except OSError as exc:
        log.error("statistics are not exported: %s", exc)
        return None
    return exporter


def serve(config: DaemonConfig, stderr: bool) -> None:
    setup_logging(config.log_level, stderr)
    ids = account(config)
    holder = StoreHolder(config.store, config.master_key_path)
    try:
        holder.current()
        log.info("key store %s opened", config.store)
    except StoreUnavailable:
        pass  # logged by the holder; we serve anyway and recover when the store is back
    socket_path = unix_socket_path(config.socket)
    if socket_path:
        prepare_directory(socket_path, ids)
    if config.pid_file:
        write_pid_file(config.pid_file, ids)
    os.umask(config.umask)
    drop_privileges(ids, config.user)
    # libmilter takes these signals with sigwait() in a thread of its own and blocks them in the threads it
    # starts. A thread started before it (the exporter's) would take them instead: the default action then
    # ended the process at once, leaving the pid file and the socket behind and the last statistics unwritten.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    exporter = start_exporter(config, holder)
    # After the privilege drop: the workers run as the milter user too.
    pool = workers.Workers(config.worker_count, config.store, config.master_key_path)
    milter.CipherMilter.runtime = milter.Runtime(config=config, stores=holder, workers=pool)
    Milter.factory = milter.CipherMilter
    log.info("listening on %s with %d worker processes", config.socket, pool.count)
    try:
        Milter.runmilter(MILTER_NAME, config.socket, timeout=config.milter_timeout)
    except libmilter.error as exc:
        raise ServeError(f"cannot serve on {config.socket}: {exc}") from None
    finally:
        pool.close()
        if exporter is not None:
            exporter.stop()
        for leftover in (config.pid_file, socket_path):
            if leftover:
                try:
                    os.unlink(leftover)
                except OSError as exc:
                    log.warning("cannot remove %s: %s", leftover, exc.strerror)
        log.info("stopped")


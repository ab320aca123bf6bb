"""Serving the milter daemon (``ciphermilter run``; the click command is cli/run.py).

Start-up order matters: read the configuration (refusing mistakes before
anything else happens), set up logging, refuse a socket another daemon
serves, open the key store, create the socket directory and the pid file,
set the umask, drop root privileges, start the worker processes as the
milter user (refusing to run when they cannot start), and only then serve.
libmilter owns the signals (SIGTERM, SIGINT and SIGHUP all
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
from multiprocessing import resource_tracker

import milter as libmilter
import Milter

from ciphermilter import files

from ciphermilter.core.settings import Settings
from ciphermilter.daemon import milter, probe, stats, workers
from ciphermilter.config import ConfigError, DaemonConfig
from ciphermilter.store import admin
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


def refuse_a_served_socket(config: DaemonConfig) -> None:
    """Stop before touching the socket or the pid file when a daemon answers on the socket already.

    libmilter unlinks an existing socket file before it binds: a second daemon
    took a live socket over, and when it exited the first was left serving an
    unlinked file while Postfix answered 451 to every message (issue 17). A
    socket nothing accepts on is stale (a killed daemon's) and is replaced.
    """
    if not probe.accepts(config.socket):
        return
    owner = ""
    if config.pid_file:
        try:
            with open(config.pid_file, encoding="ascii") as file:
                owner = f" (pid {file.read().strip()})"
        except OSError:
            pass
    raise ServeError(f"{config.socket} is served by another daemon{owner}: stop it first, or give this one"
                     " another socket")


def warn_about_the_store(holder: StoreHolder, settings: Settings) -> None:
    """The daemon serves an empty store (the keys may come later), but says that nothing will be decrypted."""
    try:
        store = holder.current()
    except StoreUnavailable:
        return  # logged by the holder; we serve anyway and recover when the store is back
    log.info("key store %s opened", store.path)
    if not settings.internal_domains and not admin.list_domains(store):
        log.warning("no internal domain: no message will be decrypted; add yours with"
                    " 'ciphermilter domains add example.com'")
    if not store.holds_private_keys():
        log.warning("no private key in the store: no message will be decrypted; import yours with"
                    " 'ciphermilter keys import FILE'")


def serve(config: DaemonConfig, stderr: bool) -> None:
    setup_logging(config.log_level, stderr)
    ids = account(config)
    refuse_a_served_socket(config)
    holder = StoreHolder(config.store, config.master_key_path)
    warn_about_the_store(holder, config.settings)
    socket_path = unix_socket_path(config.socket)
    if socket_path:
        prepare_directory(socket_path, ids)
    if config.pid_file:
        write_pid_file(config.pid_file, ids)
    try:
        os.umask(config.umask)
        drop_privileges(ids, config.user)
        # libmilter takes these signals with sigwait() in a thread of its own and blocks them in the threads it
        # starts. A thread started before it (the exporter's) would take them instead: the default action then
        # ended the process at once, leaving the pid file and the socket behind and the last statistics unwritten.
        # multiprocessing's resource tracker, started with the first worker, unblocks SIGINT and SIGTERM in the
        # thread that starts it (Python 3.11, resource_tracker.ensure_running): started first, it cannot undo
        # the block, which the workers inherit too (Ctrl-C and systemd's SIGTERM to the whole cgroup reach
        # only the daemon, which stops them by closing their pipes).
        resource_tracker.ensure_running()
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        run_milter(config, holder)
    finally:
        for leftover in (config.pid_file, socket_path):
            if leftover:
                try:
                    os.unlink(leftover)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    log.warning("cannot remove %s: %s", leftover, exc.strerror)
        log.info("stopped")


def run_milter(config: DaemonConfig, holder: StoreHolder) -> None:
    """The workers (started here, as the milter user), the statistics, then libmilter until a stop signal."""
    pool = workers.Workers(config.worker_count, config.store, config.master_key_path)
    try:
        pool.start()
    except workers.WorkersCannotStart as exc:
        raise ServeError(f"worker processes cannot start: {exc}: the daemon's user must be able to read the"
                         " installation and enter its directories") from None
    exporter = start_exporter(config, holder)
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

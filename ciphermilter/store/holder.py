"""The key store as the daemon and its workers hold it: reopened when it is replaced, and why it is not usable.

The milter thread of each message and each worker process ask the holder
for the store once per message (a ``stat`` of a SQLite file and one query of
``store_versions``, no reopen), so an admin's import on any gateway, a
restored backup or a store that comes back after a failure takes effect on
the next message without a restart.
:class:`StoreUnavailable` is the store's own failure: the milter applies its
on_error policy to it, wherever (thread or worker) it was raised.
"""

from __future__ import annotations

import logging
import os
import threading

from ciphermilter.store import locator
from ciphermilter.store.keystore import KeyStore

log = logging.getLogger(__name__)


class StoreUnavailable(Exception):
    """The key store cannot be opened or read; the message is handled by the on_error policy."""


class StoreHolder:
    """Hands out the open key store, reopening it when it was replaced on disk or came back.

    Called once per message. Each call refreshes the store, which drops its
    caches when ``store_versions`` moved (another process or gateway, such as
    an admin's CLI, committed), so new keys and domains take effect on the next
    message without a reopen; the refresh is also a cheap health check. What
    a long-lived connection does not notice is the file being replaced (a
    restored backup) or removed: the holder compares the file's identity on
    every call. While the store is missing, locked or corrupt every call
    raises :class:`StoreUnavailable` with the reason (and the on_error
    policy applies); the next call tries again, so service recovers by itself.
    One store object serves every connection thread (it locks internally);
    a replaced one is dropped, not closed, so that messages in flight finish.
    """

    def __init__(self, path: str, master_key_path: str):
        self.path = path
        self.master_key_path = master_key_path
        self._lock = threading.Lock()
        self._store: KeyStore | None = None
        self._file_id: tuple[int, int] | None = None
        self._last_error: str | None = None
        self._shared = locator.names_shared(path)

    def current(self) -> KeyStore:
        with self._lock:
            try:
                return self._fresh_store()
            except StoreUnavailable as exc:
                self._drop(str(exc))
                raise
            except Exception as exc:  # StoreError, sqlite3.DatabaseError, ...: all mean "not usable now"
                reason = str(exc) or type(exc).__name__
                self._drop(reason)
                raise StoreUnavailable(reason) from None

    def _fresh_store(self) -> KeyStore:
        """The open store, refreshed; a shared store whose connection broke (a server restarted, a standby
        promoted) gets one new connection at once, so the message in hand does not pay for the old one."""
        file_id = self._file_identity()
        store = self._store
        if store is not None and file_id == self._file_id:
            try:
                store.refresh()
                return store
            except Exception as exc:
                if not self._shared:
                    raise
                log.warning("key store %s: connection lost (%s); reconnecting", store.path, exc)
        store = self._reopen(file_id)
        store.refresh()
        return store

    def _file_identity(self) -> tuple[int, int]:
        if self._shared:  # a database server: nothing on disk here to be replaced
            return 0, 0
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise StoreUnavailable(f"key store {self.path}: {exc.strerror}") from None
        return st.st_dev, st.st_ino

    def _reopen(self, file_id: tuple[int, int]) -> KeyStore:
        self._store = KeyStore.open(self.path, self.master_key_path)
        self._file_id = file_id
        if self._last_error is not None:
            log.warning("key store %s is usable again", self.path)
            self._last_error = None
        return self._store

    def _drop(self, reason: str) -> None:
        """Forget the broken store; log the reason once, not once per message.

        The old store object is not closed here: another connection's thread
        may still be using it for its message; it closes when the last one lets go.
        """
        self._store = None
        if reason != self._last_error:
            log.error("key store unavailable, on_error policy applies: %s", reason)
            self._last_error = reason

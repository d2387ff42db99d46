"""``rate_limits.backend``: one Amplitude budget for every process that names the same backend.

The budgets themselves are pyrate-limiter's own shared buckets (``SQLiteBucket`` with its file
lock, ``PostgresBucket``, ``RedisBucket``); this module only opens them from a URL. Amplitude's
other limit, 5 concurrent REST requests per project, is not a rate, so pyrate-limiter has no
bucket for it: the same backend holds that many *slots*, each one a lock its owner's operating
system or server releases when the process dies:

* ``sqlite:///path/budget.db``: one machine. Buckets in that SQLite file; slots are ``flock``
  locks on ``path/budget.db.<project>_concurrency.<n>.lock`` (filelock), freed by the kernel
  when a process exits, however it exits.
* ``postgresql://user:password@host:5432/db``: several machines. Buckets are tables
  ``ratelimit___<name>``; slots are session advisory locks, freed when the connection closes.
* ``redis://host:6379/0`` (or ``rediss://``): several machines. Buckets are sorted sets; slots
  are keys set with ``NX`` and an expiry (:data:`REDIS_SLOT_TTL_SECONDS`), so the slot of a
  process that died is free again after that long at most.

URLs may carry a password; :meth:`SharedBackend.redact` is the only form that reaches a log
line or an error message.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
import time
import typing as t
import uuid
import zlib
from pathlib import Path
from urllib.parse import urlsplit

from tap_amplitude.settings import SettingsError

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from pyrate_limiter import AbstractBucket, Rate

SCHEMES = ("sqlite", "postgresql", "postgres", "redis", "rediss")
POLL_SECONDS = 0.05
REDIS_SLOT_TTL_SECONDS = 900
_POSTGRES_POOL_SPARE = 3  # connections beyond the slots: bucket queries and the leaker
_REDIS_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SharedSlots(t.Protocol):
    """``count`` concurrency slots shared by every process using one backend."""

    def held(self) -> contextlib.AbstractContextManager[bool]:
        """Hold one slot for the block; the value says whether it had to wait for one."""
        ...


class SharedBackend:
    """Opens pyrate-limiter buckets and concurrency slots in one ``rate_limits.backend``."""

    def __init__(self, url: str) -> None:
        """Remember the URL; connections are opened per bucket and slot set."""
        self.url = url
        self.scheme = urlsplit(url).scheme.lower()
        if self.scheme not in SCHEMES:
            raise SettingsError(
                f"rate_limits.backend {self.redact(url)}: unsupported scheme; use "
                "sqlite:///path/file.db, postgresql://user:password@host:port/db or "
                "redis://host:port/db"
            )

    @classmethod
    def open(cls, url: str) -> SharedBackend:
        """The backend ``url`` names (checked, nothing opened yet)."""
        return cls(url)

    @staticmethod
    def redact(url: str) -> str:
        """``url`` with any password replaced by ``***`` (the only form ever logged)."""
        return re.sub(r"(//[^/@:\s]*):[^/@\s]*@", r"\1:***@", url)

    def describe(self) -> str:
        """The backend for messages: its redacted URL."""
        return self.redact(self.url)

    def _failure(self, exc: Exception, doing: str) -> SettingsError:
        """A one-line error naming the backend (redacted) and the kind of failure."""
        return SettingsError(
            f"rate_limits.backend {self.describe()}: could not {doing} "
            f"({type(exc).__name__}); check that the server runs, the URL and its credentials"
        )

    # ------------------------------------------------------------------------------------
    # buckets

    def bucket(self, name: str, rates: list[Rate]) -> AbstractBucket:
        """pyrate-limiter's shared bucket called ``name`` in this backend."""
        try:
            if self.scheme == "sqlite":
                return self._sqlite_bucket(name, rates)
            if self.scheme.startswith("postgres"):
                return self._postgres_bucket(name, rates)
            return self._redis_bucket(name, rates)
        except SettingsError:
            raise
        except Exception as exc:  # noqa: BLE001 - sqlite3, psycopg, redis, OSError: one message
            raise self._failure(exc, "open its rate-limit bucket") from None

    def _sqlite_path(self) -> Path:
        """The SQLite file of ``sqlite:///relative`` or ``sqlite:////absolute``."""
        path = urlsplit(self.url).path
        if not path or path == "/":
            raise SettingsError(
                "rate_limits.backend sqlite:///… needs a file path, e.g. sqlite:///budget.db"
            )
        file = Path(path[1:])  # sqlite:///relative/file.db, sqlite:////absolute/file.db
        file.parent.mkdir(parents=True, exist_ok=True)
        return file

    def _sqlite_bucket(self, name: str, rates: list[Rate]) -> AbstractBucket:
        from pyrate_limiter import SQLiteBucket  # noqa: PLC0415 - opened only when configured

        return SQLiteBucket.init_from_file(
            rates, table=name, db_path=str(self._sqlite_path()), use_file_lock=True
        )

    def _postgres_pool(self, max_size: int) -> t.Any:
        try:
            from psycopg_pool import ConnectionPool  # noqa: PLC0415
        except ImportError:
            raise SettingsError(
                f"rate_limits.backend {self.describe()} needs psycopg: "
                "pip install 'tap-amplitude[postgres]'"
            ) from None
        import psycopg  # noqa: PLC0415

        url = self.url.replace("postgres://", "postgresql://", 1)
        psycopg.connect(url, connect_timeout=10).close()  # fail at once, not after the pool's wait
        pool = ConnectionPool(
            url, min_size=1, max_size=max_size, open=False, kwargs={"autocommit": False}
        )
        pool.open(wait=True, timeout=30)
        return pool

    def _postgres_bucket(self, name: str, rates: list[Rate]) -> AbstractBucket:
        from pyrate_limiter import PostgresBucket  # noqa: PLC0415

        return PostgresBucket(self._postgres_pool(_POSTGRES_POOL_SPARE), name, rates)

    def _redis_client(self) -> t.Any:
        try:
            from redis import Redis  # noqa: PLC0415
        except ImportError:
            raise SettingsError(
                f"rate_limits.backend {self.describe()} needs redis: "
                "pip install 'tap-amplitude[redis]'"
            ) from None
        return Redis.from_url(self.url)

    def _redis_bucket(self, name: str, rates: list[Rate]) -> AbstractBucket:
        from pyrate_limiter import RedisBucket  # noqa: PLC0415

        return t.cast(
            "AbstractBucket",
            RedisBucket.init(rates, self._redis_client(), f"tap_amplitude:{name}"),
        )

    # ------------------------------------------------------------------------------------
    # concurrency slots

    def slots(self, name: str, count: int) -> SharedSlots:
        """``count`` slots called ``name``, shared by every process using this backend."""
        try:
            if self.scheme == "sqlite":
                return _FileSlots(self._sqlite_path(), name, count)
            if self.scheme.startswith("postgres"):
                return _AdvisoryLockSlots(self._postgres_pool(count + 1), name, count)
            return _RedisSlots(self._redis_client(), name, count)
        except SettingsError:
            raise
        except Exception as exc:  # noqa: BLE001 - driver errors may quote the URL: never shown
            raise self._failure(exc, "open its concurrency slots") from None


class _PollingSlots:
    """Try every slot not held by this process; poll until one is free."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._mine: set[int] = set()  # slots this process holds (locks are per process)
        self._lock = threading.Lock()

    def _try(self, index: int) -> t.Any:
        """Take slot ``index`` without waiting: a release token, or None when taken."""
        raise NotImplementedError

    def _release(self, index: int, token: t.Any) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def held(self) -> Iterator[bool]:
        waited = False
        while True:
            with self._lock:
                for index in range(self.count):
                    if index in self._mine:
                        continue
                    token = self._try(index)
                    if token is not None:
                        self._mine.add(index)
                        break
                else:
                    index, token = -1, None
            if token is not None:
                break
            waited = True
            time.sleep(POLL_SECONDS)
        try:
            yield waited
        finally:
            with self._lock:
                self._release(index, token)
                self._mine.discard(index)


class _FileSlots(_PollingSlots):
    """Slots as ``flock`` locks on files beside the SQLite database."""

    def __init__(self, database: Path, name: str, count: int) -> None:
        from filelock import FileLock  # noqa: PLC0415

        super().__init__(count)
        self.locks = [
            FileLock(f"{database}.{name}.{index}.lock", thread_local=False)
            for index in range(count)
        ]

    @override
    def _try(self, index: int) -> t.Any:
        from filelock import Timeout  # noqa: PLC0415

        lock = self.locks[index]
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return None
        return lock

    @override
    def _release(self, index: int, token: t.Any) -> None:
        token.release()


class _AdvisoryLockSlots(_PollingSlots):
    """Slots as PostgreSQL session advisory locks, each held on its own connection."""

    def __init__(self, pool: t.Any, name: str, count: int) -> None:
        super().__init__(count)
        self.pool = pool
        self.key = zlib.crc32(f"tap_amplitude:{name}".encode()) & 0x7FFFFFFF

    @override
    def _try(self, index: int) -> t.Any:
        connection = self.pool.getconn()
        try:
            connection.autocommit = True
            row = connection.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", (self.key, index)
            ).fetchone()
        except Exception:
            self.pool.putconn(connection)
            raise
        if row and row[0]:
            return connection
        self.pool.putconn(connection)
        return None

    @override
    def _release(self, index: int, token: t.Any) -> None:
        try:
            token.execute("SELECT pg_advisory_unlock(%s, %s)", (self.key, index))
        finally:
            self.pool.putconn(token)


class _RedisSlots(_PollingSlots):
    """Slots as Redis keys set with NX and an expiry; released only by their owner."""

    def __init__(self, client: t.Any, name: str, count: int) -> None:
        super().__init__(count)
        self.client = client
        self.prefix = f"tap_amplitude:{name}:"
        self.release_script = client.register_script(_REDIS_RELEASE)

    @override
    def _try(self, index: int) -> t.Any:
        token = uuid.uuid4().hex
        taken = self.client.set(
            f"{self.prefix}{index}", token, nx=True, px=REDIS_SLOT_TTL_SECONDS * 1000
        )
        return token if taken else None

    @override
    def _release(self, index: int, token: t.Any) -> None:
        self.release_script(keys=[f"{self.prefix}{index}"], args=[token])

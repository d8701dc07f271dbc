"""A durable local queue with SQS semantics, in its own SQLite file (WAL).

Batch send and receive, a visibility timeout, a receive count per message and a dead-letter
queue after ``max_receive_count`` receives, like SQS standard queues (at-least-once; no
ordering promise to callers). Receives take messages in the order they became visible, so a
message returned for retry goes behind the backlog that was already waiting (a child whose
parent is later in a shuffled backlog is retried after that parent, not before it). A send returns only after the transaction is committed, so an
acknowledged message survives a crash of the process. Any number of processes may use the
same file; SQLite's write lock serialises receives, so one message is never in flight twice.

Local only, not SQS: a caller that waits until the consumer has processed what it sent marks
itself in the same file (:meth:`LocalQueue.waiting`); the local event source then closes its
batching window early and wakes it after each batch (:class:`Waiter`), see
:mod:`.event_source`.

Times come from an injectable clock (seconds, ``time.time`` by default).
"""

from __future__ import annotations

import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from isrflow.local.processes import ProcessIdentity

_SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body TEXT NOT NULL,
    sent REAL NOT NULL,
    visible_at REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    receiver TEXT
);
CREATE INDEX IF NOT EXISTS message_ready ON message (queue, visible_at, seq);
CREATE INDEX IF NOT EXISTS message_receipt ON message (receipt);
CREATE TABLE IF NOT EXISTS waiter (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    until REAL NOT NULL,
    address TEXT
);
"""


#: SQS's largest visibility timeout (s).
MAX_VISIBILITY_S = 43_200


@dataclass(frozen=True)
class ReceivedMessage:
    message_id: str
    receipt: str
    body: str
    receive_count: int
    sent: float


class LocalQueue:
    """One named queue in a SQLite file; ``dead_letter`` names the queue that takes poison messages.

    ``visibility_timeout`` (s): how long a received message stays hidden unless it is deleted or
    its visibility is changed. ``max_receive_count``: receives before a message moves to the
    dead-letter queue (None: never, as a queue without a redrive policy).
    """

    def __init__(
        self,
        path: str | Path,
        name: str = "registry",
        *,
        visibility_timeout: float = 30.0,
        max_receive_count: int | None = 5,
        dead_letter: str | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.path = Path(path)
        self.name = name
        self.visibility_timeout = visibility_timeout
        self.max_receive_count = max_receive_count
        self.dead_letter = dead_letter if dead_letter is not None else f"{name}-dlq"
        self.clock = clock
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.executescript(_SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(message)")}
            if "receiver" not in columns:  # a queue file made before receivers were recorded
                conn.execute("ALTER TABLE message ADD COLUMN receiver TEXT")
        self._receiver = ProcessIdentity.current().token()

    @property
    def url(self) -> str:
        """The URL handlers are given for this queue (``sqlite:///path#name``)."""
        return f"sqlite://{self.path.absolute()}#{self.name}"

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    @contextmanager
    def _write_transaction(self) -> Iterator[sqlite3.Connection]:
        """``with self._write_transaction() as conn:`` one write transaction on this thread's
        connection: ``BEGIN IMMEDIATE`` (the write lock is taken at once, so concurrent writers
        wait up to the connection timeout instead of failing on upgrade), ``COMMIT`` when the
        block ends, ``ROLLBACK`` and re-raise on any exception (KeyboardInterrupt included)."""
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # --- producer side ---------------------------------------------------------------------

    def send(self, bodies: Iterable[str], message_ids: Iterable[str] | None = None) -> list[str]:
        """Enqueue bodies in one committed transaction; returns their message ids."""
        bodies = list(bodies)
        ids = list(message_ids) if message_ids is not None else [uuid.uuid4().hex for _ in bodies]
        now = self.clock()
        with self._write_transaction() as conn:
            conn.executemany(
                "INSERT INTO message (queue, message_id, body, sent, visible_at) VALUES (?, ?, ?, ?, ?)",
                [(self.name, mid, body, now, now) for mid, body in zip(ids, bodies, strict=False)],
            )
        return ids

    # --- consumer side ---------------------------------------------------------------------

    def receive(
        self, max_messages: int = 10, visibility_timeout: float | None = None
    ) -> list[ReceivedMessage]:
        """Take up to ``max_messages`` visible messages and hide them for the visibility timeout.

        A message received more than ``max_receive_count`` times moves to the dead-letter queue
        instead of being returned.
        """
        vt = self.visibility_timeout if visibility_timeout is None else visibility_timeout
        now = self.clock()
        with self._write_transaction() as conn:
            rows = conn.execute(
                "SELECT seq, message_id, body, receive_count, sent FROM message "
                "WHERE queue = ? AND visible_at <= ? ORDER BY visible_at, seq LIMIT ?",
                (self.name, now, max_messages),
            ).fetchall()
            out: list[ReceivedMessage] = []
            limit = self.max_receive_count
            dead = [r[0] for r in rows if limit is not None and r[3] >= limit]
            if dead:
                conn.executemany(
                    "UPDATE message SET queue = ?, receipt = NULL, visible_at = ? WHERE seq = ?",
                    [(self.dead_letter, now, seq) for seq in dead],
                )
            updates = []
            for seq, message_id, body, count, sent in rows:
                if seq in dead:
                    continue
                receipt = f"{seq}:{uuid.uuid4().hex}"
                updates.append((now + vt, receipt, seq))
                out.append(ReceivedMessage(message_id, receipt, body, count + 1, sent))
            conn.executemany(
                "UPDATE message SET visible_at = ?, receive_count = receive_count + 1, receipt = ?, receiver = ? "
                "WHERE seq = ?",
                [(visible_at, receipt, self._receiver, seq) for visible_at, receipt, seq in updates],
            )
        return out

    def delete(self, receipts: Iterable[str]) -> int:
        """Acknowledge messages by receipt; a stale receipt (message received again since) is ignored."""
        receipts = list(receipts)
        if not receipts:
            return 0
        with self._write_transaction() as conn:
            n = 0
            for chunk in range(0, len(receipts), 500):
                part = receipts[chunk : chunk + 500]
                n += conn.execute(
                    f"DELETE FROM message WHERE receipt IN ({','.join('?' * len(part))})", part
                ).rowcount
        return n

    def change_visibility(self, receipts: Iterable[str], timeout: float) -> list[str]:
        """Make received messages visible again ``timeout`` seconds from now (0 = now), like SQS
        ChangeMessageVisibility; returns the receipts that changed nothing (see below)."""
        return self.change_visibility_batch([(r, timeout) for r in receipts])

    def change_visibility_batch(self, changes: Iterable[tuple[str, float]]) -> list[str]:
        """ChangeMessageVisibilityBatch: each ``(receipt, seconds)`` makes that message visible
        again ``seconds`` from now (0 <= seconds <= 43,200, SQS's bounds; ValueError otherwise).

        As on SQS, only a message in flight under that receipt changes: a stale receipt (the
        message was received again since), a deleted or dead-lettered message, or one already
        visible again, is returned in the list of receipts that changed nothing.
        """
        changes = list(changes)
        for receipt, seconds in changes:
            if not 0 <= seconds <= MAX_VISIBILITY_S:
                raise ValueError(
                    f"visibility timeout {seconds!r} s for {receipt!r} is outside [0, {MAX_VISIBILITY_S}]"
                )
        now = self.clock()
        stale = []
        with self._write_transaction() as conn:
            for receipt, seconds in changes:
                n = conn.execute(
                    "UPDATE message SET visible_at = ? WHERE receipt = ? AND queue = ? AND visible_at > ?",
                    (now + seconds, receipt, self.name, now),
                ).rowcount
                if n == 0:
                    stale.append(receipt)
        return stale

    def release(self, receipts: Iterable[str]) -> int:
        """Put received messages back as if they had not been received: visible now, their
        receive count decremented (not SQS behaviour; the local event source uses it when the
        handler could not run because the registry is unavailable, so an outage of any length
        never moves a message towards the dead-letter queue). Returns how many changed."""
        receipts = list(receipts)
        now = self.clock()
        with self._write_transaction() as conn:
            n = 0
            for receipt in receipts:
                n += conn.execute(
                    "UPDATE message SET visible_at = ?, receipt = NULL, receive_count = MAX(receive_count - 1, 0) "
                    "WHERE receipt = ? AND queue = ?",
                    (now, receipt, self.name),
                ).rowcount
        return n

    def release_abandoned(self) -> int:
        """Make visible now the in-flight messages whose receiver process is gone (killed, say),
        their receive count decremented as :meth:`release` does: a local runtime killed with
        ``kill -9`` does not hide its messages for the whole visibility timeout, and its crash does
        not move them towards the dead-letter queue. Not SQS behaviour (there a crashed consumer's
        messages wait out their visibility timeout); returns how many were released."""
        now = self.clock()
        conn = self._connect()
        rows = conn.execute(
            "SELECT DISTINCT receiver FROM message WHERE queue = ? AND visible_at > ? "
            "AND receiver IS NOT NULL",
            (self.name, now),
        ).fetchall()
        gone = [r for (r,) in rows if (ident := ProcessIdentity.parse(r)) is not None and ident.is_dead()]
        if not gone:
            return 0
        with self._write_transaction() as conn:
            n = 0
            for receiver in gone:
                n += conn.execute(
                    "UPDATE message SET visible_at = ?, receipt = NULL, receiver = NULL, "
                    "receive_count = MAX(receive_count - 1, 0) WHERE queue = ? AND receiver = ? AND visible_at > ?",
                    (now, self.name, receiver, now),
                ).rowcount
        return n

    def redrive(self, limit: int | None = None) -> int:
        """Move dead-lettered messages back to this queue (oldest first), visible now with a
        receive count of 0, like SQS's dead-letter queue redrive; returns how many moved."""
        now = self.clock()
        with self._write_transaction() as conn:
            return conn.execute(
                "UPDATE message SET queue = ?, visible_at = ?, receive_count = 0, receipt = NULL WHERE seq IN "
                "(SELECT seq FROM message WHERE queue = ? ORDER BY seq LIMIT ?)",
                (self.name, now, self.dead_letter, -1 if limit is None else int(limit)),
            ).rowcount

    # --- waiters (local only) ------------------------------------------------------------------

    @contextmanager
    def waiting(self, seconds: float) -> Iterator[Waiter]:
        """Mark, for ``seconds`` at most (of the queue's clock), that a caller waits until the
        consumer has processed what it sent: :class:`~.event_source.QueuePoller` then closes its
        batching window as soon as nothing more is visible instead of holding the batch for the
        whole window, and wakes the caller (:meth:`Waiter.sleep`) after each batch it delivered.
        Not an SQS feature: only the local event source reads it, and it changes when batches
        are delivered, never what is delivered. A waiter killed before it clears its mark stops
        counting ``seconds`` after it began."""
        waiter = Waiter()
        token = uuid.uuid4().hex
        conn = self._connect()
        try:
            conn.execute(
                "INSERT INTO waiter (id, queue, until, address) VALUES (?, ?, ?, ?)",
                (token, self.name, self.clock() + seconds, waiter.address),
            )
            yield waiter
        finally:
            try:
                conn.execute("DELETE FROM waiter WHERE id = ?", (token,))
            finally:
                waiter.close()

    def has_waiters(self) -> bool:
        """Whether some caller is inside :meth:`waiting` for this queue now."""
        row = (
            self._connect()
            .execute("SELECT 1 FROM waiter WHERE queue = ? AND until > ? LIMIT 1", (self.name, self.clock()))
            .fetchone()
        )
        return row is not None

    def notify_waiters(self) -> int:
        """Wake every caller inside :meth:`waiting` for this queue (the consumer has processed a
        batch); returns how many were signalled. A waiter that is gone is skipped."""
        rows = (
            self._connect()
            .execute(
                "SELECT address FROM waiter WHERE queue = ? AND until > ? AND address IS NOT NULL",
                (self.name, self.clock()),
            )
            .fetchall()
        )
        return sum(_signal(address) for (address,) in rows)

    # --- inspection ------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Visible, in-flight and dead-lettered message counts."""
        now = self.clock()
        conn = self._connect()
        visible = conn.execute(
            "SELECT COUNT(*) FROM message WHERE queue = ? AND visible_at <= ?", (self.name, now)
        ).fetchone()[0]
        total = conn.execute("SELECT COUNT(*) FROM message WHERE queue = ?", (self.name,)).fetchone()[0]
        dead = conn.execute("SELECT COUNT(*) FROM message WHERE queue = ?", (self.dead_letter,)).fetchone()[0]
        return {"visible": visible, "in_flight": total - visible, "dead_letter": dead}

    def dead_letters(self) -> list[tuple[str, str]]:
        conn = self._connect()
        return conn.execute(
            "SELECT message_id, body FROM message WHERE queue = ? ORDER BY seq", (self.dead_letter,)
        ).fetchall()


def parse_local_url(url: str) -> tuple[Path, str]:
    """``sqlite:///abs/path/queue.sqlite3#name`` -> (path, name)."""
    if not url.startswith("sqlite://"):
        raise ValueError(f"{url!r} is not a local queue URL (sqlite:///path#name)")
    rest = url[len("sqlite://") :]
    path, _, name = rest.partition("#")
    return Path(path), name or "registry"


class Waiter:
    """The waiting side of :meth:`LocalQueue.waiting`: :meth:`sleep` returns when the consumer
    signals (a datagram on a Linux abstract Unix socket, no file) or after the given seconds,
    whichever is first. Where abstract sockets do not exist, it is a plain ``time.sleep``."""

    def __init__(self) -> None:
        self.address: str | None = None
        self._sock: socket.socket | None = None
        if sys.platform.startswith("linux"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            name = f"isrflow-waiter-{uuid.uuid4().hex}"
            try:
                sock.bind("\0" + name)
            except OSError:
                sock.close()
            else:
                self._sock, self.address = sock, name

    def sleep(self, seconds: float) -> bool:
        """Wait up to ``seconds`` (s) for a signal; True if one came (signals sent before the call
        count, and all of them are consumed), False after the full wait."""
        if self._sock is None:
            time.sleep(seconds)
            return False
        self._sock.settimeout(seconds if seconds > 0 else 0.0)
        try:
            self._sock.recv(16)
        except (BlockingIOError, TimeoutError):
            return False
        self._sock.setblocking(False)  # several batches may have signalled: one wake-up is enough
        try:
            while self._sock.recv(16):
                pass
        except OSError:  # BlockingIOError: nothing more buffered
            pass
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _signal(address: str) -> bool:
    """Send a wake-up datagram to a waiter's abstract socket; False if it is gone or full."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.sendto(b"1", "\0" + address)
        return True
    except OSError:
        return False
    finally:
        sock.close()

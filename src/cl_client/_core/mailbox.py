"""One mailbox for every subscriber: job watches, worker watches and callback subscriptions.

A mailbox has two sides. The producer (the hub, the worker registry) holds the
:class:`MailboxSink` and calls ``deliver``/``fail`` synchronously: it never awaits and never
blocks, whatever the consumer does. The consumer holds the :class:`Mailbox`, an
``anyio.abc.ObjectReceiveStream`` (so ``async for``, ``receive()``, ``aclose()`` and anyio's
stream utilities work on it) whose ``receive()`` is always a checkpoint, as anyio's own streams'.

The sink is bounded by one of two policies:

* **coalesce** (job watches): status is state, not a log. A pending item is replaced by a newer
  one, except a *final* item (a terminal job state), which is never replaced or lost;
* **drop-oldest** (worker watches, callback subscriptions): at most ``limit`` pending items, the
  oldest dropped and counted.

A final item ends the stream: nothing is accepted after it, and once the consumer has received
it, ``receive()`` raises ``EndOfStream``. ``fail(error)`` ends it too, the consumer receiving
what was pending and then the error (once). ``aclose()`` (or dropping the Mailbox without closing
it) ends it from the consumer's side; a receive already waiting then ends with ``EndOfStream``.
The sink's ``on_end()`` hook runs once when the stream ends in any of these ways: subclasses use
it to unregister from whoever delivers.

Why not a memory object stream pair: ``send_nowait`` on a full stream raises instead of
coalescing or dropping the oldest, an unclosed stream warns (``ResourceWarning``) when dropped,
and the pair with its shared state costs several objects more per watch; a consumer that never
closes is exactly what "unregister when dropped" is for.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import ObjectReceiveStream

__all__ = ["Mailbox", "MailboxSink", "MailboxStatistics", "Wakeup"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class MailboxStatistics:
    """A snapshot of a mailbox (``watch.statistics()``)."""

    pending: int
    """Items waiting to be received."""
    delivered: int
    """Items accepted from the producer."""
    coalesced: int
    """Pending items replaced by a newer one (coalescing mailboxes)."""
    dropped: int
    """Pending items dropped because the consumer fell ``limit`` items behind (drop-oldest)."""
    tasks_waiting: int
    """Tasks waiting in ``receive()``."""
    ended: bool
    """No more items will be accepted (a final item, an error, or closed)."""
    closed: bool
    """The consumer closed the mailbox."""


class Wakeup:
    """Wake the tasks waiting right now (edge-triggered). A cancelled wait leaves nothing behind.

    The one place that makes an Event, sets it and replaces it.
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    def wake(self) -> None:
        event = self._event
        if event is not None:
            self._event = None
            event.set()

    async def wait(self) -> None:
        """Return at the next ``wake()``."""
        event = self._event
        if event is None:
            event = self._event = anyio.Event()
        await event.wait()


class MailboxSink(Wakeup, Generic[T]):
    """The producer's side of a mailbox. Items must not be None.

    Args:
        limit: With ``final`` left out or ``coalesce=False``: keep at most this many pending
            items, dropping the oldest (drop-oldest).
        final: Which items end the stream (never dropped or replaced).
        coalesce: Replace a pending non-final item by a newer one instead of queueing it.
    """

    __slots__ = (
        "_coalesce",
        "_error",
        "_final",
        "_head",
        "_limit",
        "_rest",
        "closed",
        "coalesced",
        "delivered",
        "dropped",
        "ended",
        "waiting",
    )

    def __init__(
        self,
        *,
        limit: int = 1000,
        final: Callable[[T], bool] | None = None,
        coalesce: bool = False,
    ) -> None:
        super().__init__()
        # Pending items: the oldest in _head, the others (rarely any) in _rest, so an idle or
        # keeping-up mailbox holds no deque.
        self._head: T | None = None
        self._rest: deque[T] | None = None
        self._limit = limit
        self._final = final
        self._coalesce = coalesce
        self._error: BaseException | None = None
        self.delivered: int = 0
        self.coalesced: int = 0
        self.dropped: int = 0
        self.waiting: int = 0
        self.ended: bool = False
        self.closed: bool = False

    # -- the producer ---------------------------------------------------------------------------
    def deliver(self, item: T) -> None:
        """Accept ``item`` (ignored once the stream has ended). Never blocks."""
        if self.ended:
            return
        self.delivered += 1
        final = self._final
        is_final = final is not None and final(item)
        if self._head is None:
            self._head = item
        elif is_final:
            self._queue(item)  # never replaced, never dropped (nothing can come after it)
        elif self._coalesce:
            # The newest pending item is never final (a final item ends the stream).
            rest = self._rest
            if rest:
                rest[-1] = item
            else:
                self._head = item
            self.coalesced += 1
        else:
            if 1 + len(self._rest or ()) >= self._limit:
                self.dropped += 1  # full: the oldest goes
                rest = self._rest
                if not rest:
                    self._head = item
                    self.wake()
                    return
                self._head = rest.popleft()
            self._queue(item)
        if is_final:
            self._end()
        self.wake()

    def _queue(self, item: T) -> None:
        rest = self._rest
        if rest is None:
            rest = self._rest = deque()
        rest.append(item)

    def fail(self, error: BaseException) -> None:
        """End the stream with ``error``: the consumer gets what is pending, then the error."""
        if not self.ended:
            self._error = error
            self._end()
            self.wake()

    def finish(self) -> None:
        """End the stream: the consumer gets what is pending, then ``EndOfStream``."""
        if not self.ended:
            self._end()
            self.wake()

    def _end(self) -> None:
        self.ended = True
        self.on_end()

    def on_end(self) -> None:
        """Called once when the stream ends (a final item, an error, finish() or close())."""

    # -- the consumer ---------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return (self._head is not None) + len(self._rest or ())

    @property
    def ready(self) -> bool:
        """Whether ``take()`` returns or raises something other than WouldBlock."""
        return self._head is not None or self.ended

    def take(self) -> T:
        """The next item; raises the stream's error once, then EndOfStream, or WouldBlock."""
        item = self._head
        if item is not None:
            rest = self._rest
            if rest:
                self._head = rest.popleft()
            else:
                self._head = None
                self._rest = None
            return item
        if self.closed:
            raise anyio.ClosedResourceError
        error = self._error
        if error is not None:
            self._error = None
            raise error
        if self.ended:
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    def close(self) -> None:
        """The consumer's close: drop what is pending, end the stream, wake waiting receives."""
        if not self.closed:
            self.closed = True
            self._head = None
            self._rest = None
            self._error = None
            if not self.ended:
                self._end()
            self.wake()

    def statistics(self) -> MailboxStatistics:
        return MailboxStatistics(
            pending=self.pending,
            delivered=self.delivered,
            coalesced=self.coalesced,
            dropped=self.dropped,
            tasks_waiting=self.waiting,
            ended=self.ended,
            closed=self.closed,
        )


class Mailbox(ObjectReceiveStream[T]):
    """The consumer's side of a mailbox: an anyio object receive stream.

    ``receive()`` always checkpoints; it returns the next item, raises the stream's error (once),
    ``EndOfStream`` once the stream has ended and been drained, or ``ClosedResourceError`` after
    ``aclose()`` (a receive that was already waiting ends with ``EndOfStream``, so ``async for``
    just stops). A Mailbox dropped without being closed closes its sink.
    """

    # The anyio base classes have no __slots__; ours keep the subclasses' attributes out of a
    # __dict__ (a smaller object per watch).
    __slots__ = ("_sink",)

    def __init__(self, sink: MailboxSink[T]) -> None:
        self._sink = sink

    @property
    def closed(self) -> bool:
        """True once nothing more can be received (ended and drained, or closed)."""
        sink = self._sink
        return sink.closed or (sink.ended and sink.pending == 0 and sink._error is None)

    def receive_nowait(self) -> T:
        """The next item without waiting: raises ``anyio.WouldBlock`` if there is none yet."""
        return self._sink.take()

    async def receive(self) -> T:
        sink = self._sink
        if sink.ready:
            await anyio.lowlevel.checkpoint()  # (otherwise waiting below is the checkpoint)
        while True:
            if sink.ready or sink.closed:  # (asked first: no WouldBlock raised per wait)
                return self.receive_nowait()
            sink.waiting += 1
            try:
                await sink.wait()
            finally:
                sink.waiting -= 1
            if sink.closed:
                raise anyio.EndOfStream  # closed while we waited: the iteration just stops

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Stop receiving (idempotent): pending items are dropped, the producer lets go."""
        self._sink.close()

    async def aclose(self) -> None:
        self.close()

    def statistics(self) -> MailboxStatistics:
        """A snapshot: pending, delivered, coalesced and dropped items, waiting tasks, state."""
        return self._sink.statistics()

    def __del__(self) -> None:
        # Dropped without closing: let the producer go (nothing stays registered forever).
        # (__del__ rather than weakref.finalize: fewer objects per mailbox for the GC.)
        sink = self._sink
        if not sink.closed:
            sink.close()

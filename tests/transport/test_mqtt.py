"""The MQTT transport seam against a real broker, on every backend/implementation pair.

``mqtt_url`` is the embedded broker (or ``$CL_CLIENT_TEST_MQTT_URL``). Faults are made with
helpers that sit on 127.0.0.1: a TCP proxy that can cut or stall a connection, a listener that
never answers, a scripted fake broker, and mosquitto itself (kill, TLS, passwords) when installed.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
import os
import re
import socket
import struct
import threading
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Literal, cast

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream

from cl_client import MqttError, ParameterError, parse_mqtt_url
from cl_client._transports.mqtt.connection import MqttConnection, MqttMessage, connect_mqtt
from cl_client._transports.mqtt.wire import MalformedPacketError, PacketSocket
from tests.mosquitto import Mosquitto, find_mosquitto, free_port, running_mosquitto

Backend = Literal["aiomqtt", "paho"]

needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")


@pytest.fixture(
    params=[("asyncio", "aiomqtt"), ("asyncio", "paho"), ("trio", "paho")],
    ids=["asyncio-aiomqtt", "asyncio-paho", "trio-paho"],
)
def combo(request: pytest.FixtureRequest) -> tuple[str, Backend]:
    """Every implementation on every event loop it supports (covers asyncio and trio)."""
    param: tuple[str, Backend] = request.param  # pyright: ignore[reportAny]
    return param


@pytest.fixture
def anyio_backend(combo: tuple[str, Backend]) -> str:
    return combo[0]


@pytest.fixture
def backend(combo: tuple[str, Backend]) -> Backend:
    return combo[1]


@pytest.fixture
def topic() -> str:
    """A topic prefix of our own, so a shared external broker is fine."""
    return f"cl-client-test/{uuid.uuid4().hex[:12]}"


def connect(
    url: str,
    backend: Backend,
    *,
    connect_timeout: float = 5.0,
    keepalive: int = 60,
    will: MqttMessage | None = None,
    client_id: str | None = None,
) -> AbstractAsyncContextManager[MqttConnection]:
    return connect_mqtt(
        parse_mqtt_url(url),
        backend=backend,
        connect_timeout=connect_timeout,
        keepalive=keepalive,
        will=will,
        client_id=client_id,
    )


async def receive(conn: MqttConnection, timeout: float = 5.0) -> MqttMessage:
    with anyio.fail_after(timeout):
        return await anext(conn.messages())


async def receive_n(conn: MqttConnection, n: int, timeout: float = 10.0) -> list[MqttMessage]:
    received: list[MqttMessage] = []
    with anyio.fail_after(timeout):
        async for message in conn.messages():
            received.append(message)
            if len(received) == n:
                break
    return received


async def drain_until_error(conn: MqttConnection, timeout: float = 10.0) -> MqttError:
    """Read messages until messages() raises MqttError (which must happen); return the error."""
    with anyio.fail_after(timeout):
        try:
            async for _message in conn.messages():
                pass
        except MqttError as exc:
            return exc
    pytest.fail("messages() ended without raising MqttError")


def socket_fds() -> set[str]:
    """Socket inodes this process holds (Linux); empty elsewhere."""
    fd_dir = Path("/proc/self/fd")
    found: set[str] = set()
    if not fd_dir.is_dir():
        return found
    for entry in fd_dir.iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


def busy_threads() -> set[str]:
    """Threads other than idle worker pools (asyncio's default executor, trio's thread cache)."""
    return {
        t.name
        for t in threading.enumerate()
        if not t.name.startswith(("asyncio_", "Trio thread", "AnyIO worker"))
    }


_HELPER_TASKS = ("SocketListener.serve", "fake_broker", "EmbeddedBroker", "Proxy")
"""Server-side tasks of the test helpers and the embedded broker, which may still be finishing."""


class Leaks:
    """Tasks, sockets and threads before a block, compared after it."""

    def __init__(self) -> None:
        self.tasks = {t.id: t for t in anyio.get_running_tasks()}
        self.sockets = socket_fds()
        self.threads = busy_threads()

    async def check(self) -> None:
        # let callbacks scheduled by the close run (they must not need more than this)
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        new = [
            t
            for t in anyio.get_running_tasks()
            if t.id not in self.tasks and not any(h in (t.name or "") for h in _HELPER_TASKS)
        ]
        assert new == [], [(t.name, t.coro) for t in new]
        assert socket_fds() - self.sockets == set()
        assert busy_threads() == self.threads


# ---------------------------------------------------------------------- fault helpers


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of a broker: cut or stall its connections at will."""

    def __init__(self, upstream: str, port: int) -> None:
        endpoint = parse_mqtt_url(upstream)
        self.upstream_host = endpoint.host
        self.upstream_port = endpoint.port
        self.port = port
        self._scopes: set[anyio.CancelScope] = set()
        self._flowing = anyio.Event()
        self._flowing.set()
        self._reset = False
        self.connections = 0

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def cut(self, *, reset: bool = False) -> None:
        """Close every proxied connection at once (neither side gets a DISCONNECT).

        ``reset=True`` sends the client a TCP RST instead of a FIN.
        """
        self._reset = reset
        for scope in list(self._scopes):
            scope.cancel()

    def hold(self) -> None:
        """Stop forwarding bytes in both directions (a stalled network)."""
        self._flowing = anyio.Event()

    def release(self) -> None:
        """Forward bytes again after ``hold()``."""
        self._flowing.set()

    async def handle(self, client: SocketStream) -> None:
        async with client:
            try:
                upstream = await anyio.connect_tcp(self.upstream_host, self.upstream_port)
            except OSError:
                return
            self.connections += 1
            async with upstream:
                with anyio.CancelScope() as scope:
                    self._scopes.add(scope)
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._pump, client, upstream, scope)
                        tg.start_soon(self._pump, upstream, client, scope)
                self._scopes.discard(scope)
            if self._reset:
                raw: socket.socket = client.extra(SocketAttribute.raw_socket)
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    async def _pump(
        self, source: SocketStream, sink: SocketStream, scope: anyio.CancelScope
    ) -> None:
        try:
            async for chunk in source:
                await self._flowing.wait()
                await sink.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            scope.cancel()


@asynccontextmanager
async def proxy_to(url: str) -> AsyncGenerator[Proxy]:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port: int = listener.extra(SocketAttribute.local_port)
        proxy = Proxy(url, port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, proxy.handle)
            try:
                yield proxy
            finally:
                proxy.cut()
                tg.cancel_scope.cancel()


class PacketStream:
    """Just enough MQTT framing for a scripted fake broker."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self._buffer = bytearray()

    async def _fill(self, n: int) -> None:
        while len(self._buffer) < n:
            self._buffer += await self.stream.receive()

    async def read_packet(self) -> tuple[int, bytes]:
        """(packet type, body); raises EndOfStream when the client closed."""
        await self._fill(2)
        length, multiplier, pos = 0, 1, 1
        while True:
            await self._fill(pos + 1)
            byte = self._buffer[pos]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            pos += 1
            if not byte & 0x80:
                break
        await self._fill(pos + length)
        kind = self._buffer[0] >> 4
        body = bytes(self._buffer[pos : pos + length])
        del self._buffer[: pos + length]
        return kind, body

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def wait_closed(self) -> None:
        try:
            while True:
                await self.read_packet()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass


def encode_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish_packet(topic: bytes, payload: bytes) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + payload
    return b"\x30" + encode_length(len(body)) + body


def suback_for(body: bytes, refuse: Callable[[str], bool]) -> bytes:
    packet_id, pos, codes = body[:2], 2, bytearray()
    while pos < len(body):
        size = int.from_bytes(body[pos : pos + 2], "big")
        name = body[pos + 2 : pos + 2 + size].decode()
        granted = body[pos + 2 + size]
        codes.append(0x80 if refuse(name) else granted)
        pos += 3 + size
    payload = packet_id + bytes(codes)
    return b"\x90" + encode_length(len(payload)) + payload


Script = Callable[[PacketStream], Awaitable[None]]


class FakeBroker:
    def __init__(self, port: int) -> None:
        self.port = port
        self.accepted = anyio.Event()
        self.open_connections = 0
        self._all_closed = anyio.Event()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def opened(self) -> None:
        self.open_connections += 1
        self.accepted.set()

    def closed(self) -> None:
        self.open_connections -= 1
        if self.open_connections == 0:
            self._all_closed.set()
            self._all_closed = anyio.Event()

    async def wait_all_closed(self, timeout: float = 5.0) -> None:
        """Until the clients closed every connection (and the broker its side of them)."""
        with anyio.fail_after(timeout):
            while self.open_connections:
                await self._all_closed.wait()


@asynccontextmanager
async def fake_broker(script: Script) -> AsyncGenerator[FakeBroker]:
    """A listener on 127.0.0.1 that runs ``script`` for each connection."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        broker = FakeBroker(listener.extra(SocketAttribute.local_port))

        async def handle(stream: SocketStream) -> None:
            broker.opened()
            try:
                async with stream:
                    packets = PacketStream(stream)
                    try:
                        await script(packets)
                        await packets.wait_closed()
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        pass
            finally:
                broker.closed()

        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)
            try:
                yield broker
            finally:
                tg.cancel_scope.cancel()


async def silent(packets: PacketStream) -> None:
    """Accept, read, never answer."""


async def accept_connect(packets: PacketStream) -> None:
    kind, _ = await packets.read_packet()
    assert kind == 1
    await packets.send(b"\x20\x02\x00\x00")


# ---------------------------------------------------------------------- happy paths


async def test_roundtrip_qos0_and_qos1(mqtt_url: str, backend: Backend, topic: str) -> None:
    async with connect(mqtt_url, backend) as conn:
        await conn.subscribe(f"{topic}/#", qos=1)
        await conn.publish(f"{topic}/zero", b"0", qos=0)
        await conn.publish(f"{topic}/one", "1", qos=1)
        first, second = await receive_n(conn, 2)
    assert first == MqttMessage(f"{topic}/zero", b"0", qos=0, retain=False)
    assert second == MqttMessage(f"{topic}/one", b"1", qos=1, retain=False)


async def test_deliver_hands_every_message_to_the_handler_in_order(
    mqtt_url: str, backend: Backend, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[bytes] = []
    four = anyio.Event()

    def handler(message: MqttMessage) -> None:
        if message.payload == b"boom":
            raise RuntimeError("a bug in the handler")
        received.append(message.payload)
        if len(received) == 4:
            four.set()

    async with connect(mqtt_url, backend) as conn:
        await conn.subscribe(f"{topic}/d")
        for payload in (b"0", b"1"):  # (may arrive before deliver() starts: handed over first)
            await conn.publish(f"{topic}/d", payload)
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.deliver, handler)
            for payload in (b"2", b"boom", b"3"):
                await conn.publish(f"{topic}/d", payload)
            with anyio.fail_after(5):
                await four.wait()
            tg.cancel_scope.cancel()
        # cancelled: messages go to messages() again
        await conn.publish(f"{topic}/d", b"4")
        assert (await receive(conn)).payload == b"4"
    assert received == [b"0", b"1", b"2", b"3"]
    assert "MQTT message handler failed" in caplog.text
    assert "a bug in the handler" in caplog.text
    with pytest.raises(MqttError, match="closed"):
        await conn.deliver(handler)


async def test_subscription_qos_caps_delivery(mqtt_url: str, backend: Backend, topic: str) -> None:
    async with connect(mqtt_url, backend) as conn:
        await conn.subscribe(f"{topic}/a", qos=0)
        await conn.publish(f"{topic}/a", b"x", qos=1)
        message = await receive(conn)
    assert message.qos == 0


@pytest.mark.slow
async def test_many_messages_arrive_in_order(mqtt_url: str, backend: Backend, topic: str) -> None:
    count = 300
    async with connect(mqtt_url, backend) as sub, connect(mqtt_url, backend) as pub:
        await sub.subscribe(f"{topic}/n")

        async def publish_all() -> None:
            for i in range(count):
                await pub.publish(f"{topic}/n", str(i), qos=1)

        received: list[MqttMessage] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(publish_all)
            received = await receive_n(sub, count)
    assert [int(m.payload) for m in received] == list(range(count))


async def test_concurrent_publishes_beyond_inflight_window(
    mqtt_url: str, backend: Backend, topic: str
) -> None:
    async with connect(mqtt_url, backend) as conn:
        await conn.subscribe(f"{topic}/c")
        async with anyio.create_task_group() as tg:
            for i in range(60):
                tg.start_soon(conn.publish, f"{topic}/c", str(i))
        received = await receive_n(conn, 60)
    assert sorted(int(m.payload) for m in received) == list(range(60))


async def test_large_payload(mqtt_url: str, backend: Backend, topic: str) -> None:
    payload = os.urandom(3 * 1024 * 1024)
    async with connect(mqtt_url, backend) as conn:
        await conn.subscribe(f"{topic}/big")
        await conn.publish(f"{topic}/big", payload)
        message = await receive(conn, timeout=20)
    assert message.payload == payload


async def test_retained_message_and_flag(mqtt_url: str, backend: Backend, topic: str) -> None:
    state = f"{topic}/workers/w1"
    async with connect(mqtt_url, backend) as pub:
        await pub.publish(state, b'{"idle": 1}', qos=1, retain=True)
        async with connect(mqtt_url, backend) as sub:
            await sub.subscribe(f"{topic}/workers/+")
            retained = await receive(sub)
            await pub.publish(state, b'{"idle": 0}', qos=1, retain=True)
            live = await receive(sub)
            await pub.publish(state, b"", qos=1, retain=True)  # deletes the retained message
            deleted = await receive(sub)
        assert retained == MqttMessage(state, b'{"idle": 1}', qos=1, retain=True)
        assert live == MqttMessage(state, b'{"idle": 0}', qos=1, retain=False)
        assert deleted.payload == b""
        async with connect(mqtt_url, backend) as late:
            await late.subscribe(f"{topic}/workers/+")
            await late.publish(f"{topic}/workers/marker", b"m", qos=1)
            marker = await receive(late)
        assert marker.topic == f"{topic}/workers/marker"  # nothing retained came first


async def test_wildcards_and_several_filters(mqtt_url: str, backend: Backend, topic: str) -> None:
    async with connect(mqtt_url, backend) as conn:
        await conn.subscribe(f"{topic}/events", f"{topic}/workers/+", f"{topic}/deep/#")
        for name in (
            "events",
            "workers/w1",
            "workers/w1/extra",  # not matched by +
            "deep",  # matched by deep/# (the parent level)
            "deep/a/b/c",
            "other",
        ):
            await conn.publish(f"{topic}/{name}", name)
        received = await receive_n(conn, 4)
        await conn.publish(f"{topic}/events", b"end")
        end = await receive(conn)
    assert [m.topic.removeprefix(f"{topic}/") for m in received] == [
        "events",
        "workers/w1",
        "deep",
        "deep/a/b/c",
    ]
    assert end.payload == b"end"


async def test_subscribe_nothing_is_a_no_op(mqtt_url: str, backend: Backend) -> None:
    async with connect(mqtt_url, backend) as conn:
        await conn.subscribe()


async def test_client_id_is_used(mqtt_url: str, backend: Backend, topic: str) -> None:
    client_id = f"cl-client-test-{uuid.uuid4().hex[:8]}"
    async with connect(mqtt_url, backend, client_id=client_id) as conn:
        await conn.subscribe(f"{topic}/x")
        await conn.publish(f"{topic}/x", b"ok")
        assert (await receive(conn)).payload == b"ok"


@pytest.mark.slow
async def test_keepalive_pings_keep_an_idle_connection(
    mqtt_url: str, backend: Backend, topic: str
) -> None:
    async with connect(mqtt_url, backend, keepalive=1) as conn:
        await conn.subscribe(f"{topic}/k")
        await anyio.sleep(2.5)
        await conn.publish(f"{topic}/k", b"still here")
        assert (await receive(conn)).payload == b"still here"


# ---------------------------------------------------------------------- wills and exits


async def test_will_is_published_on_abrupt_loss(
    mqtt_url: str, backend: Backend, topic: str
) -> None:
    will = MqttMessage(f"{topic}/will", b"gone", qos=1, retain=False)
    async with connect(mqtt_url, backend) as observer:
        await observer.subscribe(f"{topic}/will")
        async with proxy_to(mqtt_url) as proxy, connect(proxy.url, backend, will=will) as victim:
            await victim.subscribe(f"{topic}/unused")
            proxy.cut()
            await drain_until_error(victim)
        message = await receive(observer)
    assert message == MqttMessage(f"{topic}/will", b"gone", qos=1, retain=False)


async def test_no_will_on_clean_exit(mqtt_url: str, backend: Backend, topic: str) -> None:
    will = MqttMessage(f"{topic}/will", b"gone", qos=1)
    async with connect(mqtt_url, backend) as observer:
        await observer.subscribe(f"{topic}/will", f"{topic}/marker")
        async with connect(mqtt_url, backend, will=will) as conn:
            await conn.publish(f"{topic}/hello", b"hi")
        async with connect(mqtt_url, backend) as other:
            await other.publish(f"{topic}/marker", b"m")
        message = await receive(observer)
    assert message.topic == f"{topic}/marker"


async def test_clean_exit_leaves_nothing_behind(
    mqtt_url: str, backend: Backend, topic: str
) -> None:
    leaks = Leaks()
    async with connect(mqtt_url, backend) as conn:
        await conn.subscribe(f"{topic}/#")
        await conn.publish(f"{topic}/a", b"a")
        await receive(conn)
    await leaks.check()
    with pytest.raises(MqttError, match="closed"):
        await anext(conn.messages())
    with pytest.raises(MqttError, match="closed"):
        await conn.publish(f"{topic}/a", b"late")
    with pytest.raises(MqttError, match="closed"):
        await conn.subscribe(f"{topic}/b")


async def test_body_exception_propagates_unwrapped(mqtt_url: str, backend: Backend) -> None:
    leaks = Leaks()
    with pytest.raises(KeyError):
        async with connect(mqtt_url, backend):
            raise KeyError("boom")
    await leaks.check()


@pytest.mark.slow
async def test_cancelled_while_reading(mqtt_url: str, backend: Backend, topic: str) -> None:
    leaks = Leaks()
    with anyio.move_on_after(0.2) as scope:
        async with connect(mqtt_url, backend) as conn:
            await conn.subscribe(f"{topic}/#")
            async for _ in conn.messages():
                pass  # pragma: no cover - nothing is published
    assert scope.cancelled_caught
    await leaks.check()


async def test_not_usable_before_entering(backend: Backend) -> None:
    conn = cast(MqttConnection, connect("mqtt://127.0.0.1:1", backend))  # (it is one)
    with pytest.raises(MqttError, match=r"not open yet|closed"):
        await anext(conn.messages())
    with pytest.raises(MqttError, match=r"not open yet|closed"):
        await conn.deliver(lambda _message: None)
    with pytest.raises(MqttError):
        await conn.publish("a", b"")


async def test_bad_topics_and_qos(mqtt_url: str, backend: Backend, topic: str) -> None:
    async with connect(mqtt_url, backend) as conn:
        with pytest.raises(ParameterError):
            await conn.publish(f"{topic}/#", b"wildcards are for filters")
        with pytest.raises(ParameterError):
            await conn.publish(f"{topic}/a", b"", qos=3)
        with pytest.raises(ParameterError):
            await conn.subscribe("")
        await conn.subscribe(f"{topic}/ok")  # still usable
        await conn.publish(f"{topic}/ok", b"ok")
        assert (await receive(conn)).payload == b"ok"


async def test_cannot_enter_twice(mqtt_url: str, backend: Backend) -> None:
    manager = connect(mqtt_url, backend)
    async with manager:
        with pytest.raises(RuntimeError):
            await manager.__aenter__()
    with pytest.raises(RuntimeError, match="entered only once"):
        async with manager:
            pytest.fail("entered a closed connection again")


# ---------------------------------------------------------------------- connect failures


async def test_connection_refused_names_the_url(backend: Backend) -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    leaks = Leaks()
    with pytest.raises(MqttError, match=re.escape(url)) as info:
        async with connect(url, backend):
            pass  # pragma: no cover
    assert "refused" in str(info.value).lower()
    await leaks.check()


async def test_unresolvable_host(backend: Backend) -> None:
    with pytest.raises(MqttError, match=re.escape("mqtt://no-such-host.invalid:1883")):
        async with connect("mqtt://no-such-host.invalid:1883", backend):
            pass  # pragma: no cover


@pytest.mark.slow
async def test_connect_timeout_without_connack(backend: Backend) -> None:
    async with fake_broker(silent) as broker:
        leaks = Leaks()
        with anyio.fail_after(5):
            with pytest.raises(MqttError, match=re.escape(broker.url)) as info:
                async with connect(broker.url, backend, connect_timeout=0.3):
                    pass  # pragma: no cover
        assert "CONNACK" in str(info.value)
        await broker.wait_all_closed()
        await leaks.check()


async def test_connack_refused(backend: Backend) -> None:
    async def refuse(packets: PacketStream) -> None:
        await packets.read_packet()
        await packets.send(b"\x20\x02\x00\x05")  # not authorised

    async with fake_broker(refuse) as broker:
        leaks = Leaks()
        with pytest.raises(MqttError, match=re.escape(broker.url)) as info:
            async with connect(broker.url, backend):
                pass  # pragma: no cover
        assert "authori" in str(info.value).lower()
        await broker.wait_all_closed()
        await leaks.check()


async def test_closed_before_connack(backend: Backend) -> None:
    async def hang_up(packets: PacketStream) -> None:
        await packets.read_packet()
        await packets.stream.aclose()

    async with fake_broker(hang_up) as broker:
        with pytest.raises(MqttError, match=re.escape(broker.url)):
            async with connect(broker.url, backend):
                pass  # pragma: no cover


async def test_cancelled_connect_closes_the_socket(backend: Backend) -> None:
    async with fake_broker(silent) as broker:
        leaks = Leaks()
        with anyio.CancelScope() as scope:

            async def cancel_when_accepted() -> None:
                await broker.accepted.wait()
                await anyio.sleep(0.05)
                scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_when_accepted)
                async with connect(broker.url, backend, connect_timeout=30):
                    pytest.fail("connected to a broker that never answers")  # pragma: no cover
        assert scope.cancelled_caught
        await broker.wait_all_closed()
        await leaks.check()


# ---------------------------------------------------------------------- losses


async def test_connection_lost_mid_stream(mqtt_url: str, backend: Backend, topic: str) -> None:
    async with proxy_to(mqtt_url) as proxy, connect(proxy.url, backend) as conn:
        await conn.subscribe(f"{topic}/#")
        await conn.publish(f"{topic}/1", b"1")
        assert (await receive(conn)).payload == b"1"
        proxy.cut()
        error = await drain_until_error(conn)
        assert str(error).startswith(f"connection to {proxy.url} lost")
        with pytest.raises(MqttError, match="lost"):
            await conn.publish(f"{topic}/2", b"2")
        with pytest.raises(MqttError, match="lost"):
            await conn.subscribe(f"{topic}/3")
        with pytest.raises(MqttError, match="lost"):
            await anext(conn.messages())


async def test_deliver_raises_when_the_connection_is_lost(
    mqtt_url: str, backend: Backend, topic: str
) -> None:
    received: list[MqttMessage] = []
    first = anyio.Event()

    def handler(message: MqttMessage) -> None:
        received.append(message)
        first.set()

    async with proxy_to(mqtt_url) as proxy, connect(proxy.url, backend) as conn:
        await conn.subscribe(f"{topic}/#")

        async def publish_then_cut() -> None:
            await conn.publish(f"{topic}/1", b"1")
            await first.wait()
            proxy.cut()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(publish_then_cut)
                with pytest.raises(MqttError, match=f"connection to {proxy.url} lost"):
                    await conn.deliver(handler)
        with pytest.raises(MqttError, match="lost"):
            await anext(conn.messages())
    assert [m.payload for m in received] == [b"1"]


@pytest.mark.slow
async def test_pending_calls_fail_when_the_connection_drops(
    mqtt_url: str, backend: Backend, topic: str
) -> None:
    failures: list[str] = []

    async def expect_failure(call: Awaitable[None], name: str) -> None:
        try:
            await call
        except MqttError:
            failures.append(name)

    async with proxy_to(mqtt_url) as proxy, connect(proxy.url, backend) as conn:
        proxy.hold()
        async with anyio.create_task_group() as tg:
            tg.start_soon(expect_failure, conn.publish(f"{topic}/p", b"x", qos=1), "publish")
            tg.start_soon(expect_failure, conn.subscribe(f"{topic}/s"), "subscribe")
            await anyio.sleep(0.2)
            proxy.cut()
    assert sorted(failures) == ["publish", "subscribe"]


@pytest.mark.slow
async def test_keepalive_detects_a_dead_network(
    mqtt_url: str, backend: Backend, topic: str
) -> None:
    async with proxy_to(mqtt_url) as proxy, connect(proxy.url, backend, keepalive=1) as conn:
        await conn.subscribe(f"{topic}/k")
        proxy.hold()
        error = await drain_until_error(conn, timeout=10)
        assert str(error).startswith(f"connection to {proxy.url} lost")


async def test_connection_reset(mqtt_url: str, backend: Backend, topic: str) -> None:
    async with proxy_to(mqtt_url) as proxy, connect(proxy.url, backend) as conn:
        await conn.subscribe(f"{topic}/#")
        proxy.cut(reset=True)
        error = await drain_until_error(conn)
    assert str(error).startswith(f"connection to {proxy.url} lost")


@pytest.mark.slow
async def test_stalled_network_then_recovery(mqtt_url: str, backend: Backend, topic: str) -> None:
    """Writes that must wait for the socket, a burst of reads, calls cancelled while stalled."""
    big = os.urandom(16 * 1024 * 1024)
    burst = 2000
    async with (
        proxy_to(mqtt_url) as proxy,
        connect(proxy.url, backend, keepalive=0) as conn,
        connect(mqtt_url, backend) as direct,
    ):
        await conn.subscribe(f"{topic}/#")
        proxy.hold()
        with anyio.move_on_after(0.2) as scope:
            await conn.subscribe(f"{topic}/cancelled")
        assert scope.cancelled_caught
        with anyio.move_on_after(0.2) as scope:
            await conn.publish(f"{topic}/cancelled", b"c", qos=1)
        assert scope.cancelled_caught
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.publish, f"{topic}/big", big)
            for i in range(burst):
                await direct.publish(f"{topic}/burst", str(i), qos=0)
            await direct.publish(f"{topic}/end", b"", qos=1)
            await anyio.sleep(0.3)
            proxy.release()
        received: list[MqttMessage] = []
        with anyio.fail_after(30):
            async for message in conn.messages():
                received.append(message)
                if message.topic == f"{topic}/big":
                    break
        await conn.publish(f"{topic}/after", b"ok")
        assert (await receive(conn)).payload == b"ok"
    bursts = [int(m.payload) for m in received if m.topic == f"{topic}/burst"]
    assert bursts == list(range(burst))
    assert received[-1].payload == big


@asynccontextmanager
async def pending_connect_url() -> AsyncGenerator[str]:
    """A 127.0.0.1 port whose listen backlog is full, so a TCP connect to it stays pending."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port: int = server.getsockname()[1]  # pyright: ignore[reportAny]
        fillers: list[socket.socket] = []
        try:
            for _ in range(2):
                filler = socket.socket()
                filler.setblocking(False)
                fillers.append(filler)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", port))
            with anyio.move_on_after(0.2) as probe:
                await anyio.wait_writable(fillers[-1])
            if not probe.cancelled_caught:
                pytest.skip("this system completes TCP connects beyond the listen backlog")
            yield f"mqtt://127.0.0.1:{port}"
        finally:
            for filler in fillers:
                filler.close()


@pytest.mark.slow
async def test_tcp_connect_timeout_and_cancel(backend: Backend) -> None:
    async with pending_connect_url() as url:
        leaks = Leaks()
        with pytest.raises(MqttError, match=re.escape(url)) as info:
            async with connect(url, backend, connect_timeout=0.3):
                pass  # pragma: no cover
        assert "timed out" in str(info.value)
        assert "opening the connection" in str(info.value)
        with anyio.move_on_after(0.2) as scope:
            async with connect(url, backend, connect_timeout=30):
                pass  # pragma: no cover
        assert scope.cancelled_caught
        await leaks.check()


async def test_cancel_racing_connack(backend: Backend, topic: str) -> None:
    """However a cancellation and the CONNACK interleave, nothing is left behind."""

    def connack_then_cancel(scope: anyio.CancelScope, delay: float) -> Script:
        async def script(packets: PacketStream) -> None:
            await accept_connect(packets)
            if delay:
                await anyio.sleep(delay)
            scope.cancel()

        return script

    for delay in (0.0, 0.0, 0.001, 0.005):
        scope = anyio.CancelScope()
        async with fake_broker(connack_then_cancel(scope, delay)) as broker:
            leaks = Leaks()
            with scope:
                async with connect(broker.url, backend) as conn:
                    await anyio.sleep_forever()
                    await conn.subscribe(topic)  # pragma: no cover
            await broker.wait_all_closed()
            await leaks.check()


@pytest.mark.slow
@needs_mosquitto
async def test_broker_killed_mid_stream(backend: Backend, topic: str) -> None:
    with running_mosquitto() as broker:
        async with connect(broker.url, backend) as sub, connect(broker.url, backend) as pub:
            await sub.subscribe(f"{topic}/#")
            for i in range(5):
                await pub.publish(f"{topic}/m", str(i))
            await receive_n(sub, 5)
            broker.kill()
            error = await drain_until_error(sub)
            assert str(error).startswith(f"connection to {broker.url} lost")
            broker.start()
        async with connect(broker.url, backend) as again:  # the same URL works again
            await again.subscribe(f"{topic}/#")


# ---------------------------------------------------------------------- broker answers


async def test_refused_subscription(backend: Backend) -> None:
    async def script(packets: PacketStream) -> None:
        await accept_connect(packets)
        while True:
            kind, body = await packets.read_packet()
            if kind == 8:
                await packets.send(suback_for(body, lambda name: name.startswith("deny")))
            elif kind == 14:
                return

    async with fake_broker(script) as broker, connect(broker.url, backend) as conn:
        await conn.subscribe("fine/+", qos=1)
        with pytest.raises(MqttError, match=r"deny/a, deny/b") as info:
            await conn.subscribe("ok", "deny/a", "deny/b")
        assert broker.url in str(info.value)
        await conn.subscribe("still/fine")


paho_only = pytest.mark.parametrize(
    "combo", [("asyncio", "paho"), ("trio", "paho")], ids=["asyncio-paho", "trio-paho"]
)


@paho_only
async def test_topic_that_is_not_utf8_is_dropped(combo: tuple[str, Backend]) -> None:
    # (aiomqtt treats such a message as a broken connection)
    async def script(packets: PacketStream) -> None:
        await accept_connect(packets)
        kind, body = await packets.read_packet()
        assert kind == 8
        await packets.send(suback_for(body, lambda _name: False))
        await packets.send(publish_packet(b"bad/\xff\xfe", b"x"))
        await packets.send(publish_packet(b"good", b"y"))

    async with fake_broker(script) as broker, connect(broker.url, "paho") as conn:
        await conn.subscribe("#", qos=0)
        message = await receive(conn)
    assert message == MqttMessage("good", b"y")


def qos_publish_packet(topic: bytes, payload: bytes, qos: int, packet_id: int) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + packet_id.to_bytes(2, "big") + payload
    return bytes([0x30 | qos << 1]) + encode_length(len(body)) + body


@paho_only
async def test_qos1_acknowledged_after_delivery_and_qos2_through_paho(
    combo: tuple[str, Backend],
) -> None:
    acked: list[int] = []
    all_acked = anyio.Event()

    async def script(packets: PacketStream) -> None:
        await accept_connect(packets)
        kind, body = await packets.read_packet()
        assert kind == 8
        await packets.send(suback_for(body, lambda _name: False))
        # a burst of QoS 1 messages in one segment, then one QoS 2 message
        await packets.send(
            b"".join(qos_publish_packet(b"t/1", b"%d" % i, 1, i + 1) for i in range(50))
        )
        await packets.send(qos_publish_packet(b"t/2", b"two", 2, 99))
        while True:
            kind, body = await packets.read_packet()
            if kind == 4:  # PUBACK
                acked.append(int.from_bytes(body, "big"))
            elif kind == 5:  # PUBREC: release it
                await packets.send(b"\x62\x02" + body)
            elif kind == 7:  # PUBCOMP
                all_acked.set()
            elif kind == 14:
                return

    async with fake_broker(script) as broker, connect(broker.url, "paho") as conn:
        await conn.subscribe("#", qos=2)
        received = await receive_n(conn, 51)
        with anyio.fail_after(5):
            await all_acked.wait()
    assert [m.payload for m in received[:50]] == [b"%d" % i for i in range(50)]
    assert {m.qos for m in received[:50]} == {1}
    assert received[50] == MqttMessage("t/2", b"two", qos=2)
    assert acked == list(range(1, 51))


@paho_only
async def test_deliver_acknowledges_qos1_after_the_handler_and_runs_once(
    combo: tuple[str, Backend],
) -> None:
    acked: list[int] = []
    acked_before: list[list[int]] = []
    all_acked = anyio.Event()

    async def script(packets: PacketStream) -> None:
        await accept_connect(packets)
        kind, body = await packets.read_packet()
        assert kind == 8
        await packets.send(suback_for(body, lambda _name: False))
        kind, body = await packets.read_packet()  # a PUBLISH of ours: deliver() is running
        assert kind == 3
        packet_id = body[2 + int.from_bytes(body[:2], "big") :][:2]
        await packets.send(b"\x40\x02" + packet_id)  # its PUBACK
        await packets.send(
            b"".join(qos_publish_packet(b"t/1", b"%d" % i, 1, i + 10) for i in range(20))
        )
        while True:
            kind, body = await packets.read_packet()
            if kind == 4:  # PUBACK
                acked.append(int.from_bytes(body, "big"))
                if len(acked) == 20:
                    all_acked.set()
            elif kind == 14:
                return

    def handler(message: MqttMessage) -> None:
        acked_before.append(list(acked))
        assert int(message.payload) + 10 not in acked

    async with fake_broker(script) as broker, connect(broker.url, "paho") as conn:
        await conn.subscribe("#", qos=1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.deliver, handler)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(RuntimeError, match="already running"):
                await conn.deliver(handler)
            await conn.publish("t/mine", b"x", qos=1)
            with anyio.fail_after(5):
                await all_acked.wait()
            tg.cancel_scope.cancel()
    assert len(acked_before) == 20
    assert acked == list(range(10, 30))


@paho_only
async def test_malformed_packet_ends_the_connection(combo: tuple[str, Backend]) -> None:
    async def script(packets: PacketStream) -> None:
        await accept_connect(packets)
        kind, body = await packets.read_packet()
        assert kind == 8
        await packets.send(suback_for(body, lambda _name: False))
        await packets.send(publish_packet(b"ok", b"first"))
        await packets.send(b"\x30\xff\xff\xff\xff\x01")  # a five-byte remaining length

    async with fake_broker(script) as broker, connect(broker.url, "paho") as conn:
        await conn.subscribe("#", qos=0)
        assert (await receive(conn)).payload == b"first"
        error = await drain_until_error(conn)
    assert "malformed" in str(error) and broker.url in str(error)


# ---------------------------------------------------------------------- credentials and TLS


@needs_mosquitto
async def test_username_and_password(
    backend: Backend, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with running_mosquitto(users={"alice": "s3cret-pw"}) as broker:
        good = broker.url.replace("mqtt://", "mqtt://alice:s3cret-pw@")
        async with connect(good, backend) as conn:
            await conn.subscribe(f"{topic}/x")
        bad = broker.url.replace("mqtt://", "mqtt://alice:wrong-pw@")
        with pytest.raises(MqttError, match=re.escape(broker.url)) as info:
            async with connect(bad, backend):
                pass  # pragma: no cover
        anonymous_error = None
        try:
            async with connect(broker.url, backend):
                pass  # pragma: no cover
        except MqttError as exc:
            anonymous_error = exc
    assert anonymous_error is not None
    for text in (str(info.value), str(anonymous_error), caplog.text):
        assert "s3cret-pw" not in text
        assert "wrong-pw" not in text


def _make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("cl-client test CA"))
        .issuer_name(name("cl-client test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    cert_path = directory / "server.pem"
    key_path = directory / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mosquitto, Path]]:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    ca, cert, key = _make_certificates(tmp_path_factory.mktemp("tls"))
    with running_mosquitto(certfile=cert, keyfile=key) as broker:
        yield broker, ca


async def test_tls_roundtrip(
    tls_broker: tuple[Mosquitto, Path],
    backend: Backend,
    topic: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker, ca = tls_broker
    assert broker.url.startswith("mqtts://")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # read by OpenSSL's default verify paths
    async with connect(broker.url, backend) as conn:
        await conn.subscribe(f"{topic}/#")
        payload = os.urandom(200_000)
        await conn.publish(f"{topic}/tls", payload)
        for i in range(50):
            await conn.publish(f"{topic}/n", str(i), qos=0)
        first = await receive(conn)
        rest = await receive_n(conn, 50)
    assert first.payload == payload
    assert [int(m.payload) for m in rest] == list(range(50))


async def test_tls_untrusted_certificate(
    tls_broker: tuple[Mosquitto, Path], backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker, _ca = tls_broker
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    leaks = Leaks()
    with pytest.raises(MqttError, match=re.escape(broker.url)) as info:
        async with connect(broker.url, backend):
            pass  # pragma: no cover
    assert "certificate" in str(info.value).lower()
    await leaks.check()


@pytest.mark.slow
async def test_tls_handshake_timeout_and_cancel(backend: Backend) -> None:
    async with fake_broker(silent) as broker:
        url = broker.url.replace("mqtt://", "mqtts://")
        leaks = Leaks()
        with pytest.raises(MqttError, match=re.escape(url)) as info:
            async with connect(url, backend, connect_timeout=0.3):
                pass  # pragma: no cover
        assert "timed out" in str(info.value)
        with anyio.move_on_after(0.2) as scope:
            async with connect(url, backend, connect_timeout=30):
                pass  # pragma: no cover
        assert scope.cancelled_caught
        await broker.wait_all_closed()
        await leaks.check()


# ---------------------------------------------------------------------- arguments


async def test_aiomqtt_needs_asyncio(combo: tuple[str, Backend]) -> None:
    endpoint = parse_mqtt_url("mqtt://127.0.0.1:1")
    if combo[0] == "trio":
        with pytest.raises(ParameterError, match="asyncio"):
            connect_mqtt(endpoint, backend="aiomqtt")
    else:
        assert type(connect_mqtt(endpoint)).__name__ == "AiomqttConnection"
    if combo[0] == "trio":
        assert type(connect_mqtt(endpoint)).__name__ == "PahoConnection"


async def test_resolve_without_traffic() -> None:
    from cl_client._transports.mqtt.connection import _resolve

    assert await _resolve("::1", 1883) == [(socket.AF_INET6, ("::1", 1883, 0, 0))]
    assert await _resolve("127.0.0.1", 1883) == [(socket.AF_INET, ("127.0.0.1", 1883))]
    assert await _resolve("localhost", 1883)  # the system resolver, no packets sent


def test_bad_arguments() -> None:
    endpoint = parse_mqtt_url("mqtt://127.0.0.1:1")
    with pytest.raises(ValueError, match="backend"):
        connect_mqtt(endpoint, backend="nope")  # pyright: ignore[reportArgumentType]
    with pytest.raises(ValueError, match="keepalive"):
        connect_mqtt(endpoint, keepalive=-1)
    with pytest.raises(ValueError, match="connect_timeout"):
        connect_mqtt(endpoint, connect_timeout=0)
    with pytest.raises(ParameterError, match="asyncio"):
        connect_mqtt(endpoint, backend="aiomqtt")  # no event loop at all
    assert type(connect_mqtt(endpoint)).__name__ == "PahoConnection"


# ---------------------------------------------------------------------- the paho driver's socket


class KernelSocket:
    """A stand-in for the OS socket under PacketSocket: chunks to read, writes recorded."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)
        self.writes: list[bytes] = []
        self.accept = 1 << 30  # bytes the "kernel" takes per send; 0: would block

    def recv(self, size: int) -> bytes:
        if not self.chunks:
            raise BlockingIOError
        chunk = self.chunks.pop(0)
        if len(chunk) > size:
            self.chunks.insert(0, chunk[size:])
        return chunk[:size]

    def send(self, data: bytes | bytearray) -> int:
        if not self.accept:
            raise BlockingIOError
        taken = bytes(data[: self.accept])
        self.writes.append(taken)
        return len(taken)

    def fileno(self) -> int:
        return -1

    def setblocking(self, flag: bool) -> None:
        pass


def packet_socket(kernel: KernelSocket) -> tuple[PacketSocket, list[str]]:
    events: list[str] = []
    return PacketSocket(cast(socket.socket, kernel), lambda: events.append("closed")), events


def test_packet_socket_frames_split_packets_and_acks_in_one_write() -> None:
    stream = b"".join(qos_publish_packet(b"t", b"p%d" % i, 1, i) for i in range(1, 101))
    stream += publish_packet(b"zero", b"q0") + b"\x90\x03\x00\x01\x01"  # QoS 0, then a SUBACK
    kernel = KernelSocket(*(stream[i : i + 7] for i in range(0, len(stream), 7)))
    sock, _ = packet_socket(kernel)
    messages: list[MqttMessage] = []
    others: list[int] = []
    while True:
        packet = sock.next_packet()
        if packet is None:
            if sock.fill() or kernel.chunks:  # (chunks left: readable again after a short read)
                continue
            break
        header, start, end = packet
        if header & 0xF6 in (0x30, 0x32):
            message = sock.take_publish(header, start, end)
            assert message is not None
            messages.append(message)
        else:
            sock.give_to_paho(end)
            others.append(sock.recv(1)[0])  # paho's reads stop at the end of its packet
            assert len(sock.recv(100)) == end - start + 1
            with pytest.raises(BlockingIOError):
                sock.recv(1)
            assert sock.at(end)
            others.append(end)
    assert sock.drained and not sock.eof
    assert [m.payload for m in messages] == [b"p%d" % i for i in range(1, 101)] + [b"q0"]
    assert messages[0] == MqttMessage("t", b"p1", qos=1) and messages[-1].qos == 0
    assert others[0] == 0x90
    assert kernel.writes == []
    assert sock.unsent == 400 and sock.flush() and sock.unsent == 0
    assert kernel.writes == [b"".join(b"\x40\x02" + i.to_bytes(2, "big") for i in range(1, 101))]


def test_packet_socket_short_read_means_drained() -> None:
    class CountingKernel(KernelSocket):
        reads = 0

        def recv(self, size: int) -> bytes:
            self.reads += 1
            return super().recv(size)

    kernel = CountingKernel(publish_packet(b"t", b"one"))
    sock, _ = packet_socket(kernel)
    sock.drained = False
    assert sock.fill() and kernel.reads == 1
    packet = sock.next_packet()
    assert packet is not None
    assert sock.take_publish(*packet) == MqttMessage("t", b"one")
    assert sock.next_packet() is None
    assert not sock.fill() and sock.drained and kernel.reads == 1  # no second read needed
    kernel.chunks.append(publish_packet(b"t", b"two"))
    assert sock.fill() and kernel.reads == 2  # (after the wait for readability)


def test_packet_socket_refuses_malformed_packets() -> None:
    sock, _ = packet_socket(KernelSocket(b"\x30\x80\x80\x80\x80\x01"))
    assert sock.fill()
    with pytest.raises(MalformedPacketError):
        sock.next_packet()
    for body in (b"\x00", b"\x00\x05ab"):  # no room for the topic length, a topic too long
        sock, _ = packet_socket(KernelSocket(b"\x32" + encode_length(len(body)) + body))
        assert sock.fill()
        packet = sock.next_packet()
        assert packet is not None
        with pytest.raises(MalformedPacketError):
            sock.take_publish(*packet)


def test_packet_socket_eof_write_limit_and_close() -> None:
    kernel = KernelSocket(b"")
    sock, events = packet_socket(kernel)
    assert not sock.fill() and sock.eof
    kernel.accept = 0
    assert sock.send(b"x" * (1 << 20)) == 1 << 20
    with pytest.raises(BlockingIOError):  # over the limit and the kernel takes nothing
        sock.send(b"more")
    assert not sock.flush() and sock.pending() == 0
    kernel.accept = 3
    sock.close()  # writes what it can before closing
    assert kernel.writes and events == ["closed"] and sock.closed and sock.unsent == 0
    sock.close()
    assert events == ["closed"]
    for call in (sock.fill, lambda: sock.recv(1), lambda: sock.send(b"x")):
        with pytest.raises(OSError, match="closed"):
            call()


def test_packet_socket_read_errors_are_kept() -> None:
    class Broken(KernelSocket):
        def recv(self, size: int) -> bytes:
            raise ConnectionResetError("reset by peer")

        def send(self, data: bytes | bytearray) -> int:
            raise BrokenPipeError("broken pipe")

    sock, _ = packet_socket(Broken())
    with pytest.raises(ConnectionResetError):
        sock.fill()
    assert isinstance(sock.error, ConnectionResetError)
    sock.send(b"x")
    with pytest.raises(BrokenPipeError):
        sock.flush()
    assert isinstance(sock.error, BrokenPipeError)

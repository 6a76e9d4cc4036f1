"""The embedded MQTT broker, through real sockets, on asyncio and trio."""

from __future__ import annotations

import logging
import queue
import socket
import threading
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Self

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream
from paho.mqtt.client import Client as PahoClient
from paho.mqtt.client import ConnectFlags, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cl_client.testing import BrokerStats, EmbeddedBroker
from cl_client.testing.broker import _broker
from cl_client.testing.broker._broker import _Client
from cl_client.testing.broker._packets import encode_length, matches, valid_filter

# -- a tiny raw MQTT 3.1.1 client ------------------------------------------------------------


def _str(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return len(raw).to_bytes(2, "big") + raw


def _pkt(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_length(len(body)) + body


def connect_packet(
    client_id: str = "",
    *,
    keepalive: int = 60,
    will: tuple[str, bytes, int, bool] | None = None,
    username: str | None = None,
    password: bytes | None = None,
    protocol: str = "MQTT",
    level: int = 4,
    extra_flags: int = 0,
) -> bytes:
    flags = 0x02 | extra_flags
    payload = _str(client_id)
    if will is not None:
        topic, message, qos, retain = will
        flags |= 0x04 | qos << 3 | (0x20 if retain else 0)
        payload += _str(topic) + _str(message)
    if username is not None:
        flags |= 0x80
        payload += _str(username)
    if password is not None:
        flags |= 0x40
        payload += _str(password)
    head = _str(protocol) + bytes((level, flags)) + keepalive.to_bytes(2, "big")
    return _pkt(0x10, head + payload)


def publish_packet(
    topic: str | bytes, payload: bytes, *, qos: int = 0, retain: bool = False, pid: int = 1
) -> bytes:
    body = _str(topic) + (pid.to_bytes(2, "big") if qos else b"") + payload
    return _pkt(0x30 | qos << 1 | int(retain), body)


def subscribe_packet(pid: int, *filters: tuple[str, int]) -> bytes:
    body = pid.to_bytes(2, "big") + b"".join(_str(f) + bytes((q,)) for f, q in filters)
    return _pkt(0x82, body)


def unsubscribe_packet(pid: int, *filters: str) -> bytes:
    return _pkt(0xA2, pid.to_bytes(2, "big") + b"".join(_str(f) for f in filters))


@dataclass
class Packet:
    first: int
    body: bytes

    @property
    def kind(self) -> int:
        return self.first >> 4


@dataclass
class Pub:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    pid: int


class RawClient:
    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    @classmethod
    async def open(cls, port: int) -> Self:
        return cls(await anyio.connect_tcp("127.0.0.1", port))

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    def _parse(self) -> Packet | None:
        if len(self.buf) < 2:
            return None
        length, shift, i = 0, 0, 1
        while True:
            if i >= len(self.buf):
                return None
            byte = self.buf[i]
            i += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if len(self.buf) < i + length:
            return None
        packet = Packet(self.buf[0], bytes(self.buf[i : i + length]))
        del self.buf[: i + length]
        return packet

    async def recv(self, timeout: float = 5.0) -> Packet:
        with anyio.fail_after(timeout):
            while (packet := self._parse()) is None:
                self.buf += await self.stream.receive()
        return packet

    async def recv_publish(self, timeout: float = 5.0) -> Pub:
        packet = await self.recv(timeout)
        assert packet.kind == 3, packet
        qos = packet.first >> 1 & 3
        n = int.from_bytes(packet.body[:2], "big")
        topic = packet.body[2 : 2 + n].decode()
        rest = packet.body[2 + n :]
        pid = int.from_bytes(rest[:2], "big") if qos else 0
        return Pub(topic, rest[2:] if qos else rest, qos, bool(packet.first & 1), pid)

    async def expect_nothing(self, delay: float = 0.1) -> None:
        with anyio.move_on_after(delay):
            packet = await self.recv(delay + 1)
            pytest.fail(f"unexpected packet {packet}")

    async def expect_closed(self, timeout: float = 5.0) -> None:
        with anyio.fail_after(timeout):
            try:
                while True:
                    self.buf += await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return

    async def connect(self, client_id: str = "", *, keepalive: int = 60) -> int:
        await self.send(connect_packet(client_id, keepalive=keepalive))
        connack = await self.recv()
        assert connack.first == 0x20
        return connack.body[1]

    async def subscribe(self, *filters: tuple[str, int], pid: int = 1) -> list[int]:
        await self.send(subscribe_packet(pid, *filters))
        suback = await self.recv()
        assert suback.first == 0x90
        assert suback.body[:2] == pid.to_bytes(2, "big")
        return list(suback.body[2:])

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False, pid: int = 1
    ) -> None:
        await self.send(publish_packet(topic, payload, qos=qos, retain=retain, pid=pid))
        if qos == 1:
            assert await self.recv() == Packet(0x40, pid.to_bytes(2, "big"))


@asynccontextmanager
async def raw_client(
    broker: EmbeddedBroker, client_id: str = "", *, connect: bytes | None = None
) -> AsyncGenerator[RawClient]:
    client = await RawClient.open(broker.port)
    try:
        await client.send(connect if connect is not None else connect_packet(client_id))
        assert await client.recv() == Packet(0x20, b"\x00\x00")
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker() as embedded:
        yield embedded


# -- connection --------------------------------------------------------------------------------


async def test_connect_assigns_client_id_and_accepts_credentials(broker: EmbeddedBroker) -> None:
    assert broker.host == "127.0.0.1"
    assert broker.port > 0
    assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
    assert broker.is_listening
    login = connect_packet(username="alice", password=b"secret")
    async with raw_client(broker, connect=login), raw_client(broker, "named"):
        ids = broker.client_ids
        assert "named" in ids
        assert any(cid.startswith("auto-") for cid in ids)
        assert broker.stats.connections == 2
    with anyio.fail_after(5):
        while broker.client_ids:  # noqa: ASYNC110 - the broker has no event for this
            await anyio.sleep(0.01)


async def test_mqtt_3_1_is_accepted(broker: EmbeddedBroker) -> None:
    packet = connect_packet("old", protocol="MQIsdp", level=3)
    async with raw_client(broker, connect=packet) as client:
        await client.send(b"\xc0\x00")  # PINGREQ
        assert await client.recv() == Packet(0xD0, b"")


async def test_unsupported_protocol_level_gets_connack_1(broker: EmbeddedBroker) -> None:
    client = await RawClient.open(broker.port)
    await client.send(connect_packet("v5", level=5))
    assert await client.recv() == Packet(0x20, b"\x00\x01")
    await client.expect_closed()
    await client.aclose()
    assert broker.stats.protocol_errors == 0


async def test_connect_timeout_closes_silent_socket() -> None:
    async with EmbeddedBroker(connect_timeout=0.05) as broker:
        client = await RawClient.open(broker.port)
        await client.expect_closed()
        await client.aclose()


async def test_keepalive_timeout_publishes_will() -> None:
    async with EmbeddedBroker(keepalive_factor=0.1) as broker, raw_client(broker) as watcher:
        await watcher.subscribe(("wills/#", 1))
        sleeper = await RawClient.open(broker.port)
        will = ("wills/sleeper", b"gone", 1, False)
        await sleeper.send(connect_packet("sleeper", keepalive=1, will=will))
        assert (await sleeper.recv()).kind == 2
        await sleeper.expect_closed()  # 1 s keepalive x 0.1 = 0.1 s of silence
        await sleeper.aclose()
        got = await watcher.recv_publish()
        assert (got.topic, got.payload, got.qos) == ("wills/sleeper", b"gone", 1)
        assert broker.stats.wills_published == 1


@pytest.mark.slow
async def test_pings_keep_a_connection_alive() -> None:
    async with EmbeddedBroker(keepalive_factor=0.5) as broker:
        client = await RawClient.open(broker.port)
        assert await client.connect("pinger", keepalive=1) == 0
        for _ in range(8):  # 0.8 s in total, beyond the 0.5 s deadline
            await anyio.sleep(0.1)
            await client.send(b"\xc0\x00")
            assert await client.recv() == Packet(0xD0, b"")
        await client.send(b"\xe0\x00")
        await client.expect_closed()
        await client.aclose()


async def test_keepalive_zero_means_no_timeout() -> None:
    async with EmbeddedBroker(keepalive_factor=0.01) as broker:
        client = await RawClient.open(broker.port)
        assert await client.connect("patient", keepalive=0) == 0
        await client.expect_nothing(0.1)
        assert broker.client_ids == ["patient"]
        await client.aclose()


async def test_client_id_takeover_drops_old_connection(broker: EmbeddedBroker) -> None:
    async with raw_client(broker) as watcher:
        await watcher.subscribe(("status/#", 0))
        will = ("status/dup", b"old gone", 0, False)
        async with raw_client(broker, connect=connect_packet("dup", will=will)) as old:
            await old.subscribe(("x", 0))
            async with raw_client(broker, "dup") as new:
                await old.expect_closed()
                got = await watcher.recv_publish()
                assert (got.topic, got.payload) == ("status/dup", b"old gone")
                await new.send(b"\xc0\x00")
                assert await new.recv() == Packet(0xD0, b"")
                assert broker.client_ids.count("dup") == 1


async def test_disconnect_discards_will(broker: EmbeddedBroker) -> None:
    async with raw_client(broker) as watcher:
        await watcher.subscribe(("wills/#", 0))
        packet = connect_packet("polite", will=("wills/polite", b"x", 0, False))
        async with raw_client(broker, connect=packet) as polite:
            await polite.send(b"\xe0\x00")
            await polite.expect_closed()
        async with raw_client(
            broker, connect=connect_packet("rude", will=("wills/rude", b"y", 0, False))
        ):
            pass  # closed without DISCONNECT
        got = await watcher.recv_publish()
        assert got.topic == "wills/rude"
        assert broker.stats.wills_published == 1


# -- subscriptions and delivery ----------------------------------------------------------------


def test_topic_filter_rules() -> None:
    assert valid_filter("a/+/c") and valid_filter("#") and valid_filter("a/#")
    assert valid_filter("+") and valid_filter("/")
    for bad in ("", "a/#/b", "a#", "a/b+", "+a/b", "##"):
        assert not valid_filter(bad)

    def match(topic_filter: str, topic: str) -> bool:
        return matches(topic_filter.split("/"), topic.split("/"))

    assert match("sport/#", "sport")
    assert match("sport/#", "sport/tennis/player1")
    assert match("sport/+/player1", "sport/tennis/player1")
    assert match("+/+", "/finance")
    assert match("#", "a/b")
    assert not match("sport/+", "sport/tennis/player1")
    assert not match("sport/+", "sport")
    assert not match("sport/tennis", "sport/tennis/x")
    assert not match("#", "$SYS/uptime")
    assert not match("+/uptime", "$SYS/uptime")
    assert match("$SYS/#", "$SYS/uptime")


async def test_suback_grants_and_rejections(broker: EmbeddedBroker) -> None:
    async with raw_client(broker) as client:
        granted = await client.subscribe(("a", 0), ("b", 1), ("c", 2), ("d/#/e", 1), ("f+", 0))
        assert granted == [0, 1, 1, 0x80, 0x80]


async def test_wildcards_and_dollar_topics(broker: EmbeddedBroker) -> None:
    async with raw_client(broker) as sub, raw_client(broker) as pub:
        await sub.subscribe(("inference/workers/+", 0), ("#", 0), ("$SYS/#", 0))
        await pub.publish("inference/workers/w1", b"1")
        await pub.publish("$SYS/broker/uptime", b"2")
        await pub.publish("other/deep/topic", b"3")
        got = [await sub.recv_publish() for _ in range(3)]
        assert [(p.topic, p.payload) for p in got] == [
            ("inference/workers/w1", b"1"),  # matched twice, delivered once
            ("$SYS/broker/uptime", b"2"),
            ("other/deep/topic", b"3"),
        ]
        await sub.expect_nothing()


async def test_qos_levels_and_overlap(broker: EmbeddedBroker) -> None:
    async with raw_client(broker) as sub, raw_client(broker) as pub:
        assert await sub.subscribe(("q/+", 0), ("q/one", 1)) == [0, 1]
        await pub.publish("q/one", b"a", qos=1, pid=7)
        await pub.publish("q/two", b"b", qos=1, pid=8)
        await pub.publish("q/one", b"c", qos=0)
        first, second, third = [await sub.recv_publish() for _ in range(3)]
        assert (first.topic, first.qos, first.retain) == ("q/one", 1, False)
        assert first.pid != 0
        assert (second.topic, second.qos, second.pid) == ("q/two", 0, 0)  # min(1, 0)
        assert (third.payload, third.qos) == (b"c", 0)
        await sub.send(_pkt(0x40, first.pid.to_bytes(2, "big")))  # PUBACK, ignored
        await sub.expect_nothing()
        assert broker.stats.messages_received == 3
        assert broker.stats.messages_delivered == 3


async def test_packet_ids_wrap(broker: EmbeddedBroker) -> None:
    async with raw_client(broker, "wrap") as sub:
        await sub.subscribe(("w", 1))
        broker._sessions["wrap"].last_pid = 0xFFFE
        for _ in range(3):
            broker.publish("w", "x", qos=1)
        pids = [(await sub.recv_publish()).pid for _ in range(3)]
        assert pids == [0xFFFF, 1, 2]


async def test_inbound_qos2_handshake_delivers_once(broker: EmbeddedBroker) -> None:
    async with raw_client(broker) as sub, raw_client(broker) as pub:
        assert await sub.subscribe(("q2", 2)) == [1]
        await pub.send(publish_packet("q2", b"once", qos=2, pid=5))
        assert await pub.recv() == Packet(0x50, b"\x00\x05")  # PUBREC
        await pub.send(publish_packet("q2", b"once", qos=2, pid=5))  # a resend before PUBREL
        assert await pub.recv() == Packet(0x50, b"\x00\x05")
        await pub.send(_pkt(0x62, b"\x00\x05"))  # PUBREL
        assert await pub.recv() == Packet(0x70, b"\x00\x05")  # PUBCOMP
        got = await sub.recv_publish()
        assert (got.payload, got.qos) == (b"once", 1)
        await sub.expect_nothing()
        # the broker never sends QoS 2, but answers a stray PUBREC and ignores PUBCOMP
        await sub.send(_pkt(0x50, b"\x00\x09"))
        assert await sub.recv() == Packet(0x62, b"\x00\x09")
        await sub.send(_pkt(0x70, b"\x00\x09"))
        await sub.expect_nothing()


async def test_unsubscribe(broker: EmbeddedBroker) -> None:
    async with raw_client(broker) as sub, raw_client(broker) as pub:
        await sub.subscribe(("a/#", 0), ("b", 0))
        await sub.send(unsubscribe_packet(3, "a/#", "never/subscribed"))
        assert await sub.recv() == Packet(0xB0, b"\x00\x03")
        await pub.publish("a/x", b"gone")
        await pub.publish("b", b"sentinel")
        assert (await sub.recv_publish()).payload == b"sentinel"


async def test_retained_set_replace_delete(broker: EmbeddedBroker) -> None:
    async with raw_client(broker) as pub, raw_client(broker) as live:
        await live.subscribe(("workers/+", 1))
        await pub.publish("workers/w1", b"v1", qos=1, retain=True)
        await pub.publish("workers/w1", b"v2", qos=1, retain=True)
        await pub.publish("workers/w2", b"other", qos=0, retain=True)
        got = [await live.recv_publish() for _ in range(3)]
        assert [(p.payload, p.retain) for p in got] == [
            (b"v1", False),
            (b"v2", False),
            (b"other", False),
        ]
        assert broker.retained == {"workers/w1": b"v2", "workers/w2": b"other"}

        async with raw_client(broker) as late:
            assert await late.subscribe(("workers/+", 1), ("workers/#", 0)) == [1, 0]
            got = sorted([await late.recv_publish() for _ in range(2)], key=lambda p: p.topic)
            assert [(p.topic, p.payload, p.retain, p.qos) for p in got] == [
                ("workers/w1", b"v2", True, 1),
                ("workers/w2", b"other", True, 0),
            ]
            await late.expect_nothing()

        await pub.publish("workers/w1", b"", qos=1, retain=True)  # delete, still forwarded live
        deleted = await live.recv_publish()
        assert (deleted.topic, deleted.payload, deleted.retain) == ("workers/w1", b"", False)
        assert broker.retained == {"workers/w2": b"other"}
        broker.clear_retained()
        assert broker.retained == {}


async def test_broker_side_publish(broker: EmbeddedBroker) -> None:
    async with raw_client(broker) as sub:
        await sub.subscribe(("inject/#", 1))
        broker.publish("inject/text", "hello", qos=1, retain=True)
        broker.publish("inject/bytes", b"\x00\x01")
        first, second = await sub.recv_publish(), await sub.recv_publish()
        assert (first.payload, first.qos) == (b"hello", 1)
        assert (second.payload, second.qos) == (b"\x00\x01", 0)
        assert broker.retained == {"inject/text": b"hello"}
    with pytest.raises(Exception, match="invalid topic"):
        broker.publish("a/+", b"")


# -- faults ------------------------------------------------------------------------------------


async def test_restart_keeps_port_and_retained(broker: EmbeddedBroker) -> None:
    port = broker.port
    async with raw_client(broker) as client:
        await client.subscribe(("r/#", 0))
        await client.publish("r/kept", b"yes", qos=1, retain=True)
        assert (await client.recv_publish()).payload == b"yes"
        await broker.restart()
        await client.expect_closed()
    assert broker.port == port
    assert broker.client_ids == []
    async with raw_client(broker) as again:
        await again.subscribe(("r/#", 0))
        got = await again.recv_publish()
        assert (got.topic, got.retain) == ("r/kept", True)
    await broker.restart(keep_retained=False)
    assert broker.retained == {}
    assert broker.stats.connections == 2


async def test_restart_sends_no_wills(broker: EmbeddedBroker) -> None:
    will = ("w/x", b"bye", 0, True)
    async with raw_client(broker, connect=connect_packet("x", will=will)) as client:
        await broker.restart()
        await client.expect_closed()
    assert broker.retained == {}
    assert broker.stats.wills_published == 0


async def test_stop_and_start(broker: EmbeddedBroker) -> None:
    port = broker.port
    async with raw_client(broker) as client:
        await broker.stop()
        await client.expect_closed()
    assert not broker.is_listening
    await broker.stop()  # idempotent
    with pytest.raises(OSError):
        await anyio.connect_tcp("127.0.0.1", port)
    await broker.start()
    await broker.start()  # idempotent
    assert broker.port == port
    async with raw_client(broker) as client:
        await client.send(b"\xc0\x00")
        assert await client.recv() == Packet(0xD0, b"")


async def test_disconnect_all_keeps_listening_and_sends_wills(broker: EmbeddedBroker) -> None:
    will = ("w/gone", b"bye", 1, True)
    async with (
        raw_client(broker, connect=connect_packet("a", will=will)) as a,
        raw_client(broker, "b") as b,
    ):
        await broker.disconnect_all()
        await a.expect_closed()
        await b.expect_closed()
    assert broker.retained == {"w/gone": b"bye"}
    assert broker.is_listening
    async with raw_client(broker, "c"):
        assert broker.client_ids == ["c"]


async def test_exit_closes_everything() -> None:
    async with EmbeddedBroker() as broker:
        port = broker.port
        client = await RawClient.open(port)
        assert await client.connect("c") == 0
        silent = await RawClient.open(port)  # never sends CONNECT
    await client.expect_closed()
    await silent.expect_closed()
    await client.aclose()
    await silent.aclose()
    with pytest.raises(OSError):
        await anyio.connect_tcp("127.0.0.1", port)
    assert not broker.is_listening
    assert broker.client_ids == []
    with pytest.raises(RuntimeError, match="not running"):
        await broker.start()
    with pytest.raises(RuntimeError, match="not been entered"):
        await broker.__aexit__(None, None, None)  # anyio.AsyncContextManagerMixin's rule


async def test_body_error_escapes_unwrapped() -> None:
    with pytest.raises(ValueError, match="boom"):
        async with EmbeddedBroker() as broker, raw_client(broker):
            raise ValueError("boom")


async def test_cancelled_body_exits_cleanly() -> None:
    with anyio.move_on_after(0.05) as scope:
        async with EmbeddedBroker() as broker, raw_client(broker):
            await anyio.sleep_forever()
    assert scope.cancelled_caught


async def test_enter_twice_and_port_in_use(broker: EmbeddedBroker) -> None:
    with pytest.raises(RuntimeError, match="already been entered"):
        await broker.__aenter__()
    with pytest.raises(OSError):
        async with EmbeddedBroker(port=broker.port):
            pytest.fail("bound a port that is in use")


async def test_enter_while_another_task_enters_then_again_after_exit() -> None:
    broker = EmbeddedBroker()

    async def enter_too() -> None:
        with pytest.raises(RuntimeError, match="already running"):
            async with broker:
                pytest.fail("entered a broker that another task is starting")

    async with anyio.create_task_group() as tg:
        tg.start_soon(enter_too)  # runs while the first entry waits for its listener task
        async with broker:
            assert broker.is_listening
    assert not broker.is_listening
    port = broker.port
    async with broker:  # a broker may be entered again once it has exited, on the same port
        assert broker.port == port
        client = await RawClient.open(port)
        assert await client.connect("again") == 0
        await client.aclose()


MALFORMED = {
    "length over 4 bytes": b"\x30\xff\xff\xff\xff\x01",
    "second CONNECT": connect_packet("again"),
    "reserved type 0": b"\x00\x00",
    "reserved type 15": b"\xf0\x00",
    "SUBSCRIBE flags": _pkt(0x80, b"\x00\x01" + _str("a") + b"\x00"),
    "SUBSCRIBE empty": _pkt(0x82, b"\x00\x01"),
    "SUBSCRIBE QoS 3": subscribe_packet(1, ("a", 3)),
    "UNSUBSCRIBE empty": _pkt(0xA2, b"\x00\x01"),
    "PUBLISH QoS 3": _pkt(0x36, _str("a") + b"\x00\x01"),
    "PUBLISH wildcard": publish_packet("a/+", b"x"),
    "PUBLISH empty topic": publish_packet("", b"x"),
    "PUBLISH bad UTF-8": publish_packet(b"\xff\xfe", b"x"),
    "PUBLISH NUL": publish_packet("a\x00b", b"x"),
    "PUBLISH packet id 0": publish_packet("a", b"x", qos=1, pid=0),
    "PUBLISH truncated": _pkt(0x30, b"\x00\x09ab"),
    "PUBACK flags": _pkt(0x41, b"\x00\x01"),
    "PUBACK short": _pkt(0x40, b"\x00"),
}

MALFORMED_CONNECT = {
    "PUBLISH first": publish_packet("a", b"x"),
    "unknown protocol": _pkt(0x10, _str("FOO") + b"\x04\x02\x00\x3c" + _str("x")),
    "reserved flag": connect_packet("x", extra_flags=0x01),
    "CONNECT header flags": b"\x11" + connect_packet("x")[1:],
    "will QoS 3": connect_packet("x", will=("w", b"", 3, False)),
    "will retain without will": connect_packet("x", extra_flags=0x20),
    "will topic wildcard": connect_packet("x", will=("w/#", b"", 0, False)),
    "truncated": _pkt(0x10, _str("MQTT") + b"\x04"),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_packet_closes_only_that_client(
    broker: EmbeddedBroker, data: bytes
) -> None:
    async with raw_client(broker) as bystander, raw_client(broker) as bad:
        await bystander.subscribe(("t", 0))
        await bad.send(data)
        await bad.expect_closed()
        await bad.send(b"")
        async with raw_client(broker) as pub:
            await pub.publish("t", b"still alive")
        assert (await bystander.recv_publish()).payload == b"still alive"
    assert broker.stats.protocol_errors == 1


async def test_a_packet_over_max_packet_size_closes_only_that_client() -> None:
    # The announced length is refused before the body is read: nobody can make the broker
    # buffer 256 MiB per connection.
    async with EmbeddedBroker(max_packet_size=4096) as broker:
        async with raw_client(broker) as bystander, raw_client(broker) as bad:
            await bystander.subscribe(("t", 0))
            await bad.send(b"\x30" + encode_length(200 * 1024 * 1024) + b"\x00\x01t")
            await bad.expect_closed()
            async with raw_client(broker) as pub:
                await pub.publish("t", b"x" * 4000)
            assert (await bystander.recv_publish()).payload == b"x" * 4000
        assert broker.stats.protocol_errors == 1


@pytest.mark.parametrize("data", MALFORMED_CONNECT.values(), ids=MALFORMED_CONNECT.keys())
async def test_malformed_connect(broker: EmbeddedBroker, data: bytes) -> None:
    client = await RawClient.open(broker.port)
    await client.send(data)
    await client.expect_closed()
    await client.aclose()
    assert broker.stats.protocol_errors == 1
    assert broker.client_ids == []


async def test_packets_split_across_reads(broker: EmbeddedBroker) -> None:
    sub = await RawClient.open(broker.port)
    try:
        connect = connect_packet("split")
        await sub.send(connect[:5])
        await anyio.sleep(0.05)  # the broker reads a partial CONNECT first
        await sub.send(connect[5:])
        assert await sub.recv() == Packet(0x20, b"\x00\x00")
        await sub.subscribe(("s", 0))
        data = publish_packet("s", b"x" * 300) * 3
        for i in range(0, len(data), 7):  # byte-dribbled packets, two-byte remaining length
            await sub.send(data[i : i + 7])
        got = [await sub.recv_publish() for _ in range(3)]
        assert all(p.payload == b"x" * 300 for p in got)
    finally:
        await sub.aclose()


async def test_slow_subscriber_drops_are_counted() -> None:
    count, size, limit = 120, 256 * 1024, 4
    async with (
        EmbeddedBroker(max_queued_messages=limit) as broker,
        raw_client(broker, "slow") as slow,
        raw_client(broker, "fast") as fast,
        raw_client(broker, "pub") as pub,
    ):
        raw: socket.socket = slow.stream.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        await slow.subscribe(("big", 0))
        await fast.subscribe(("big", 0))
        payload = b"p" * size
        for _ in range(count):  # the fast subscriber gets every message
            await pub.publish("big", payload)
            assert (await fast.recv_publish(timeout=10)).payload == payload
        dropped = broker.stats.messages_dropped
        assert dropped > 0
        assert broker.stats.messages_delivered == 2 * count - dropped
        for _ in range(count - dropped):  # the slow one gets the rest, in order, then nothing
            assert (await slow.recv_publish(timeout=10)).payload == payload
        await slow.expect_nothing()


@pytest.mark.slow
async def test_many_messages_qos1(broker: EmbeddedBroker) -> None:
    count = 3000
    async with raw_client(broker) as sub, raw_client(broker) as pub:
        await sub.subscribe(("load/+", 1))
        data = b"".join(
            publish_packet(f"load/{i % 10}", str(i).encode(), qos=1, pid=i % 65535 + 1)
            for i in range(count)
        )
        await pub.send(data)
        received = [await sub.recv_publish() for _ in range(count)]
        assert [int(p.payload) for p in received] == list(range(count))
        acks = [await pub.recv() for _ in range(count)]
        assert all(a.kind == 4 for a in acks)
    assert broker.stats.messages_dropped == 0


async def test_stats_is_a_dataclass(broker: EmbeddedBroker) -> None:
    assert broker.stats == BrokerStats()


async def test_retained_beyond_queue_limit_are_dropped() -> None:
    async with EmbeddedBroker(max_queued_messages=2) as broker:
        for i in range(3):
            broker.publish(f"r/{i}", b"x", retain=True)
        async with raw_client(broker) as client:
            await client.subscribe(("r/#", 0))
            got = sorted([(await client.recv_publish()).topic for _ in range(2)])
            assert got == ["r/0", "r/1"]
            await client.expect_nothing()
        assert broker.stats.messages_dropped == 1


async def test_route_cache_is_bounded(
    broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_broker, "_MAX_ROUTES", 2)
    async with raw_client(broker) as client:
        await client.subscribe(("c/+", 0))
        for i in range(5):
            broker.publish(f"c/{i}", str(i))
        assert [(await client.recv_publish()).payload for _ in range(5)] == [
            str(i).encode() for i in range(5)
        ]
        assert len(broker._routes) <= 2


async def test_writer_stops_on_a_closed_stream(broker: EmbeddedBroker) -> None:
    stream = await anyio.connect_tcp("127.0.0.1", broker.port)
    client = _Client(stream)
    await stream.aclose()
    client.send(b"\xc0\x00")
    await client.run_writer()  # returns instead of raising
    assert client.scope.cancel_called


# -- interoperability with paho-mqtt -----------------------------------------------------------


async def test_paho_interop(broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="cl_client.testing.broker._broker")
    connected = threading.Event()
    subscribed = threading.Event()
    messages: queue.Queue[tuple[str, bytes, int, bool]] = queue.Queue()

    def on_connect(
        client: PahoClient,
        userdata: object,
        flags: ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not reason.is_failure:
            connected.set()

    def on_subscribe(
        client: PahoClient,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        subscribed.set()

    def on_message(client: PahoClient, userdata: object, message: MQTTMessage) -> None:
        messages.put((message.topic, bytes(message.payload), message.qos, bool(message.retain)))

    paho = PahoClient(callback_api_version=CallbackAPIVersion.VERSION2, client_id="paho")
    paho.on_connect = on_connect
    paho.on_subscribe = on_subscribe
    paho.on_message = on_message
    paho.will_set("paho/status", b"offline", qos=1, retain=True)
    await anyio.to_thread.run_sync(paho.connect, "127.0.0.1", broker.port, 30)
    paho.loop_start()
    try:
        assert await anyio.to_thread.run_sync(connected.wait, 5)
        paho.subscribe("raw/#", qos=1)
        assert await anyio.to_thread.run_sync(subscribed.wait, 5)
        async with raw_client(broker) as raw:
            await raw.publish("raw/one", b"hi", qos=1, retain=True)
            got = await anyio.to_thread.run_sync(messages.get, True, 5.0)
            assert got == ("raw/one", b"hi", 1, False)
            await raw.subscribe(("paho/#", 1))
            info = paho.publish("paho/data", b"from paho", qos=1)
            await anyio.to_thread.run_sync(info.wait_for_publish, 5.0)
            got_raw = await raw.recv_publish()
            assert (got_raw.topic, got_raw.payload, got_raw.qos) == ("paho/data", b"from paho", 1)
            await raw.send(_pkt(0x40, got_raw.pid.to_bytes(2, "big")))
    finally:
        paho.disconnect()
        await anyio.to_thread.run_sync(paho.loop_stop)
    assert "paho/status" not in broker.retained  # clean DISCONNECT: no will

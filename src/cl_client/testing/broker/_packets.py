"""MQTT 3.1.1 packets for the embedded broker: framing, encoding, field reading and topic
matching. Pure functions; the broker (``_broker.py``) does the I/O."""

from __future__ import annotations

__all__ = [
    "FieldReader",
    "ProtocolViolation",
    "check_topic",
    "encode_length",
    "encode_publish",
    "matches",
    "packet",
    "split_packet",
    "valid_filter",
]


class ProtocolViolation(Exception):
    """The client broke the protocol: close its connection."""


def encode_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        if not n:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_length(len(body)) + body


def encode_publish(topic: bytes, payload: bytes, qos: int, retain: bool, pid: int) -> bytes:
    head = len(topic).to_bytes(2, "big") + topic + (pid.to_bytes(2, "big") if qos else b"")
    first = 0x30 | qos << 1 | int(retain)
    return b"".join((bytes((first,)), encode_length(len(head) + len(payload)), head, payload))


def split_packet(buf: bytearray, pos: int, max_size: int = 1 << 28) -> tuple[int, int, int] | None:
    """Find the packet at ``pos``: (first byte, body start, body end), or None if incomplete.

    A packet announcing more than ``max_size`` bytes is a protocol error (before it is read).
    """
    end = len(buf)
    i = pos + 1
    length = 0
    shift = 0
    while True:
        if i >= end:
            return None
        byte = buf[i]
        i += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 21:
            raise ProtocolViolation("remaining length longer than 4 bytes")
    if length > max_size:
        raise ProtocolViolation(f"a packet of {length} bytes (at most {max_size} accepted)")
    if end - i < length:
        return None
    return buf[pos], i, i + length


class FieldReader:
    """Reads MQTT fields from one packet body; running short is a protocol error."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ProtocolViolation("packet too short")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self._take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self._take(2), "big")

    def binary(self) -> bytes:
        return self._take(self.u16())

    def string(self) -> str:
        try:
            text = self.binary().decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation("invalid UTF-8 string") from None
        if "\x00" in text:
            raise ProtocolViolation("U+0000 in string")
        return text

    def rest(self) -> bytes:
        return self._take(len(self.data) - self.pos)


def check_topic(topic: str) -> None:
    if not topic or "+" in topic or "#" in topic:
        raise ProtocolViolation(f"invalid topic name {topic!r}")


def valid_filter(topic_filter: str) -> bool:
    if not topic_filter:
        return False
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != last):
            return False
        if "+" in level and level != "+":
            return False
    return True


def matches(filter_levels: list[str], topic_levels: list[str]) -> bool:
    if topic_levels[0].startswith("$") and filter_levels[0] in ("+", "#"):
        return False
    for i, level in enumerate(filter_levels):
        if level == "#":
            return True
        if i >= len(topic_levels) or (level != "+" and level != topic_levels[i]):
            return False
    return len(filter_levels) == len(topic_levels)

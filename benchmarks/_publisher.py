"""Publisher process for the fan-out benchmark: job events at full speed over QoS 1.

Usage: python benchmarks/_publisher.py URL TOPIC PREFIX FIRST N RATE EVENT_TYPE [EVENT_TYPE ...]

Publishes, for each event type in turn, one event per job ``PREFIX-FIRST .. PREFIX-(FIRST+N-1)``,
at RATE messages per second (0: as fast as paho can). The
``timestamp`` field carries the send time in microseconds since the epoch (the real server sends
milliseconds; the client passes the value through untouched), so receivers can measure latency.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from urllib.parse import urlsplit

from paho.mqtt.client import Client, MQTTMessageInfo
from paho.mqtt.enums import CallbackAPIVersion


def main(argv: list[str]) -> None:
    url, topic, prefix, first, count, rate_text, *event_types = argv
    rate = float(rate_text)
    parts = urlsplit(url)
    client = Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    infos: list[MQTTMessageInfo] = []
    start = time.perf_counter()
    sent = 0
    for event_type in event_types:
        progress = 100 if event_type == "completed" else 0
        for i in range(int(first), int(first) + int(count)):
            if rate > 0:
                delay = start + sent / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            sent += 1
            payload = json.dumps(
                {
                    "job_id": f"{prefix}-{i}",
                    "event_type": event_type,
                    "timestamp": time.time_ns() // 1000,
                    "progress": progress,
                }
            )
            infos.append(client.publish(topic, payload, qos=1))
    done = threading.Event()
    deadline = time.monotonic() + 120
    while not all(info.is_published() for info in infos) and time.monotonic() < deadline:
        done.wait(0.01)
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main(sys.argv[1:])

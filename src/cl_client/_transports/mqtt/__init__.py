"""MQTT: one connection interface (``connection``) with two drivers, aiomqtt on asyncio and
paho-mqtt on trio, over a shared buffered socket (``wire``)."""

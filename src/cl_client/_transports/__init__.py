"""The I/O edges: HTTP (``exchange``, ``http``) and MQTT (``mqtt``), see INTERNALS.md, "Layers".

Only this layer talks to httpx, aiomqtt and paho-mqtt; it turns their failures into the errors of
``cl_client._core.errors``.
"""

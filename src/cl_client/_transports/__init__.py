"""The I/O edges: HTTP (``exchange``, ``http``) and MQTT (``mqtt``), see INTERNALS.md, "Layers".

Every request and every MQTT packet goes through this layer, which turns the failures of httpx,
aiomqtt and paho-mqtt into the errors of ``cl_client._core.errors`` (elsewhere httpx appears only
where an ``httpx.AsyncClient`` is created or passed in, and where AuthClient builds a request).
"""

"""The core: no I/O and no tasks of its own (INTERNALS.md, "Layers").

Errors and settings (the leaf modules every layer shares), the wire models and their decoding
(``payloads``), the job lifecycle rules, the job hub and the worker registry, the reconcile
schedule, the mailbox behind every watch, backoff and argument checks. It is driven by calls from
the engine (``cl_client._engine``) and the front doors, with the time passed in, and is tested
without a network; only the mailbox and the registry's waits use anyio, to wake a consumer.
"""

"""The pure core: no I/O, no tasks, no clock of its own (INTERNALS.md, "Layers").

Errors and settings (the leaf modules every layer shares), the wire models and their decoding
(``payloads``), the job lifecycle rules, the job hub and the worker registry, the reconcile
schedule, the mailbox behind every watch, backoff and argument checks. Everything here is driven
by calls from the engine (``cl_client._engine``) and is tested without a network.
"""

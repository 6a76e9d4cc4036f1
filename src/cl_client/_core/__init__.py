"""The core: no I/O and no tasks of its own (INTERNALS.md, "Layers").

Errors and settings (the leaf modules every layer shares), the wire models and their decoding
(``payloads``), the job lifecycle rules, the job hub and the worker registry, the reconcile
schedule, the mailbox behind every watch, backoff, argument checks and ExceptionGroup unwrapping
(``groups``). It is driven by calls from the engine (``cl_client._engine``) and the front doors,
with the time passed in, and is tested without a network; anyio appears only where a consumer is
woken (the mailbox, the registry's waits) and where a cancellation is recognised (``groups``).
"""

"""The central tuning values: every number that shapes delivery, retries and retention.

Each value carries a one-line reason. Streams, consumers, buckets and the runner read them
from here and nowhere else, so changing one is one edit with its reason beside it. Durations
are in seconds. ADR-0024 records why the consumer values are what they are.
"""

from typing import Final

# --- streams -------------------------------------------------------------------------------

EVENTS_MAX_AGE: Final = 7 * 24 * 3600.0
"""A week of events: enough to replay rules against last week, small enough for a Pi's disk."""

EVENTS_DUPLICATE_WINDOW: Final = 10 * 60.0
"""HA context ids dedupe re-publication after a gateway crash or a reconnect storm."""

COMMANDS_MAX_AGE: Final = 24 * 3600.0
"""A command nobody executed in a day is stale; its deadline expired long before."""

COMMANDS_DUPLICATE_WINDOW: Final = 10 * 60.0
"""Deterministic command ids make a re-fired rule's command a stored duplicate, not a second."""

AUDIT_DUPLICATE_WINDOW: Final = 10 * 60.0
"""The record id is the msg id: a republished audit record after a crash is stored once."""

AUDIT_MAX_AGE: Final = 0.0
"""0 = forever in the stream; the sink's store is the archive, the stream is the source."""

DLQ_MAX_AGE: Final = 30 * 24 * 3600.0
"""A month to notice, inspect and replay a dead letter before it expires."""

DLQ_DUPLICATE_WINDOW: Final = 10 * 60.0
"""A consumer that dead-letters and crashes before acking republishes the same dead letter."""

STREAM_MAX_BYTES: Final = 1024 * 1024 * 1024
"""1 GiB per stream caps disk use on a small home server; limits discard the oldest."""

MAX_MSG_SIZE: Final = 1024 * 1024
"""1 MiB: far above any HA state, low enough that a runaway attribute cannot clog a stream."""

# --- consumers -----------------------------------------------------------------------------

MAX_ACK_PENDING: Final = 256
"""The in-flight bound per consumer: enough to pipeline, small enough to keep memory flat."""

ACK_WAIT: Final = 30.0
"""A handler slower than this is either stuck or must send in_progress; redeliver it."""

COMMAND_ACK_WAIT: Final = 5.0
"""The gateway's AckWait on COMMANDS: a command held by a gateway that was killed comes back
within seconds, not half a minute, so the restarted gateway settles it while it still matters
(its calls last at most 10 s and send in_progress every third of this)."""

MAX_DELIVER: Final = 5
"""Five attempts ride out a restart of a dependency; beyond that it goes to the DLQ."""

BACKOFF: Final = (1.0, 5.0, 15.0, 30.0)
"""Nak delays for attempts 2..5: quick retry first, then give a dependency time.

The runner naks transient failures with these; they are deliberately not the consumer's
BackOff, because JetStream then uses BackOff[0] (1 s) as the first delivery's AckWait.
"""

MAX_WAITING: Final = 64
"""Outstanding pull requests per consumer; a runner keeps only a few, this caps a bug."""

# --- key-value buckets ---------------------------------------------------------------------

IDEMPOTENCY_TTL: Final = 7 * 24 * 3600.0
"""The dedupe window for effects: far longer than any stream duplicate window or redelivery."""

PROJECTION_HISTORY: Final = 1
"""The projection is current state only; the EVENTS stream is the history."""

TIMERS_HISTORY: Final = 1
"""A timer key holds its current deadline; re-arming overwrites it."""

STATUS_TTL: Final = 0.0
"""Service status records are overwritten on every heartbeat; they never expire."""

# --- pulling -------------------------------------------------------------------------------

FETCH_BATCH: Final = 100
"""Batch 100 keeps per-message client cost near 20-57 us (PERF-NOTES) without hoarding work."""

FETCH_EXPIRES: Final = 5.0
"""A pull request waits this long on an idle stream before it is renewed."""

PULL_IDLE_HEARTBEAT: Final = 1.0
"""The server proves an idle pull request is alive this often; 3 missed = re-issue the pulls."""

PULL_RETRY_NOT_READY: Final = 0.1
"""A pull request nobody answered (503: JetStream still recovering after a server restart) is
sent again after this long: soon, so a backlog stays short, and never in a hot loop."""

LATE_AFTER: Final = 0.1
"""A message handled longer than this after it was sent is a backlog's (live ones take about
1 ms), ADR-0031. A late state change: the commands of the runs it starts name it
(``CallServiceV1.late_trigger``), and the gateway drops them under backlog policy ``latest`` if
Home Assistant has changed that entity since. A late command: the gateway drops it under
``latest`` if a newer command for the same entities already waits for its turn."""

MAX_CONCURRENCY: Final = 64
"""Concurrent handlers per runner: handlers mostly wait on round trips (measured: 16 -> 64
raised the bench's throughput with outputs by ~15%, 128 added nothing); fixed worker tasks."""

PUBLISH_TIMEOUT: Final = 5.0
"""A publish not acknowledged by JetStream in this time fails the message transiently."""

IN_PROGRESS_INTERVAL: Final = ACK_WAIT / 3
"""A handler running longer than this tells the server it is alive, well before AckWait."""

DRAIN_TIMEOUT: Final = 20.0
"""On SIGTERM, handlers get this long to finish; the rest are nak'ed for immediate retry."""

IDEMPOTENCY_LEASE: Final = 2 * ACK_WAIT
"""A claim older than this was left by a crashed worker; another may take it over."""

API_REQUEST_TIMEOUT: Final = 10.0
"""How long the gateway's API waits for another service to answer a request (the audit sink's
``why`` may search EVENTS); past it the route answers 503 (ADR-0036)."""

"""The reliability mechanisms every service uses, written once.

- :mod:`.errors` — transient (a dependency is down: wait) versus deterministic (count, then dead-letter).
- :mod:`.retry` — one capped exponential backoff and the loops that wait a dependency out.
- :mod:`.health` — which dependencies this process found down (``/healthz``).
- :mod:`.consumed` — the consumer ledger: attempts per (consumer group, event) across crashes, outputs kept.
- :mod:`.outbox` — the transactional outbox and its relay.
- :mod:`.claims` — the claim ledger: side effects recorded as intents, claimed with a lease, taken over.
- :mod:`.lease` and :mod:`.periodic` — periodic tasks, on one leader where they must be.
- :mod:`.deadletters` — dead letters kept for the operators next to the ``dlq`` topic.
- :mod:`.crashpoints` — where the fault tests kill a process (only when the tests arm them).
"""

"""Forwarding stored events to destinations, in three parts:

- ``fanout``: which destinations get which newly stored events, and how their RQ jobs are queued;
- ``outbox``: the delivery rows written in the store transaction, queued after its commit, and the
  sweep that queues those a failure left behind (forwarding is at-least-once after the commit);
- ``delivery``: the forward job, sending with holds, retries and dead letters;
- ``resources``: what a process holds across jobs (httpx client, Redis, the clock, the destination cache).

The destinations table itself is ``workers/destinations.py``.
"""

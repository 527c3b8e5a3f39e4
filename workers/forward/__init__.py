"""Forwarding stored events to destinations, in three parts:

- ``fanout``: which destinations get which newly stored events; their delivery rows and RQ jobs;
- ``delivery``: the forward job, sending with holds, retries and dead letters;
- ``resources``: what a process holds across jobs (httpx client, Redis, the clock, the destination cache).

The destinations table itself is ``workers/destinations.py``.
"""

"""Replays: dead letters again, stored events to a destination, archives of raw vendor payloads.

Run by ``trackgate replay ...`` (the CLI reaches this module by dotted path). Each is

- idempotent: dead letters are claimed row by row (``dead`` → ``replaying``) so one is re-sent once;
  stored events are skipped where a delivery to the destination carries them already (``--force``
  sends them again), and keep their message ids (destinations that dedupe drop repeats);
  archive lines get message ids derived from the file's digest and the line number when the payload
  has none, so importing a file twice stores nothing new (the store dedupes on message id);
- resumable: ``replay_checkpoints`` records how far a run got; a re-run continues from there
  (``--restart`` ignores it); ``replay events`` keys it by the command's words (``--from 1d``);
- visible: a progress bar with counts and rate on a terminal, plain lines otherwise.
"""

from __future__ import annotations

from trackgate.workers.replay.dead_letters import replay_dead_letters
from trackgate.workers.replay.events import replay_events
from trackgate.workers.replay.files import replay_file

__all__ = ["replay_dead_letters", "replay_events", "replay_file"]

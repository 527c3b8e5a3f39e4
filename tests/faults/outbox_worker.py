"""A worker process for the outbox fault test: ``python outbox_worker.py [after_commit]``.

With ``after_commit`` it SIGKILLs itself in its first persist job right after the store transaction
committed, before the forward jobs are queued. The hook is patched in here, test-only: production
code carries none. On the code before the outbox the same point is the fan-out (it ran after the
commit), so the test shows the window there too.
"""

from __future__ import annotations

import os
import signal
import sys

from trackgate.schemas.settings import configure_logging, settings_from_env
from trackgate.workers import worker


def die(*_args, **_kwargs):
    print(f"fault_point_kill pid={os.getpid()}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    settings = settings_from_env().require()
    configure_logging(settings.log_level)
    if sys.argv[1:2] == ["after_commit"]:
        try:
            from trackgate.workers.forward import outbox
        except ImportError:  # before the outbox
            from trackgate.workers.forward import fanout

            fanout.fan_out = die  # type: ignore[attr-defined]  # the pre-outbox code has fan_out; mypy sees today's
        else:
            outbox.enqueue_or_defer = die
    worker.run(settings)  # both queues, as the README runs it


if __name__ == "__main__":
    main()

"""A local pool worker: ``python -m omops.runtime._pool_worker``.

Reads one JSON task per line on stdin, runs it through
:func:`omops.runtime.tasks.execute` and writes one JSON result per line to
the stdout it was started with. Whatever the task itself prints goes to
stderr, so it can never garble a result line.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import orjson


def _main() -> None:
    results = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # prints of tasks go to stderr

    from omops.omega import Omega
    from omops.runtime.results import failure_of
    from omops.runtime.tasks import execute

    root = Omega()  # OMOPS_CATALOG, OMOPS_BLOBS from the environment the pool gave
    views: dict[str, Omega] = {root.bucket: root}

    def reply(message: dict[str, Any]) -> None:
        results.write(orjson.dumps(message, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
        results.flush()

    reply({"ready": True})
    for line in sys.stdin.buffer:
        message = orjson.loads(line)
        bucket = message.get("bucket") or root.bucket
        om = views.get(bucket) or views.setdefault(bucket, root[bucket])
        try:
            value = execute(om, message["task"], message["payload"], message.get("previous"))
        except Exception as exc:  # the task's failure is its result
            failed = failure_of(exc)
            error = {
                "type": failed.exc_type,
                "message": failed.exc_message,
                "traceback": failed.remote_traceback,
            }
            reply({"id": message["id"], "ok": False, "error": error})
        else:
            reply({"id": message["id"], "ok": True, "value": value})
    root.close()


if __name__ == "__main__":
    _main()

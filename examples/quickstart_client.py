"""Ask the served 'forecast' model for predictions over HTTP (stdlib only)."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request


def wait_until_up(base: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise SystemExit(f"the server at {base} did not come up in {seconds:.0f} s") from None
            time.sleep(0.2)


def main(base: str) -> None:
    wait_until_up(base)
    body = json.dumps({"columns": ["x", "y"], "data": [[1.5, 0.5], [-2.0, -1.0]]}).encode()
    request = urllib.request.Request(
        f"{base}/api/v1/model/forecast/predict", data=body, method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
    print(f"POST {base}/api/v1/model/forecast/predict ->", json.dumps(answer))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000")

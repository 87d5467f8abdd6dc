"""The OpenAI streaming fake of tests/fakes/model_servers.py as a process of its own: prints its
base URL, serves until its stdin closes, then prints what it saw as one JSON line.

    python -m bench.fake_model <first_token_delay_s>
"""

from __future__ import annotations

import json
import sys

from tests.fakes.model_servers import FakeOpenAIServer


def main() -> None:
    with FakeOpenAIServer(first_token_delay_s=float(sys.argv[1])) as server:
        print(server.base_url, flush=True)
        sys.stdin.read()
        stats = {"requests": len(server.requests), "max_open_streams": server.max_open_streams,
                 "completed_streams": server.completed_streams}
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()

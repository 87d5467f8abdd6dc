"""`python -m app.dramatiq_cli actors ...`: Dramatiq's own CLI, whose main process logs in the
chosen format (BATCHLINE_LOG_FORMAT). Its worker processes set theirs at boot
(actors/middleware.py), since Dramatiq starts them fresh (spawn)."""

from __future__ import annotations

import sys
from typing import Any

from dramatiq import cli

from app.logs import use_chosen_format

_dramatiq_parent_logging = cli.setup_parent_logging


def _setup_parent_logging(args: Any, *, stream: Any = sys.stderr) -> Any:
    logger = _dramatiq_parent_logging(args, stream=stream)
    use_chosen_format()
    return logger


def main() -> int:
    cli.setup_parent_logging = _setup_parent_logging
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())

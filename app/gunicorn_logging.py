"""Gunicorn's own lines (its start, its workers, the access log) in the chosen log format:
`gunicorn --logger-class app.gunicorn_logging.Logger` (the Procfile's web line)."""

from __future__ import annotations

from gunicorn.glogging import Logger as GunicornLogger

from app.logs import use_chosen_format


class Logger(GunicornLogger):
    def setup(self, cfg: object) -> None:
        super().setup(cfg)
        use_chosen_format(self.error_log, self.access_log)

    def _get_user(self, environ: dict) -> None:
        """Nobody: gunicorn would show the user of a Basic Authorization header in the access
        log, and a client that sends its API key that way (`curl -u KEY:`) would have it logged."""
        return None

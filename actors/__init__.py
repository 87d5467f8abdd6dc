"""Batchline's Dramatiq actors. `dramatiq actors` imports this package: the broker first, then
every actor module so that each actor is declared."""

from actors import (  # noqa: F401
    broker,
    callbacks,
    pipeline,
)

"""Shapes shared by several resources: pagination queries, errors."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.limits import MAX_TEXT_CHARS, Id

__all__ = ["MAX_TEXT_CHARS"]  # re-exported: its home was here

#: Page size when a list query gives none, and the largest accepted (0 gives an empty page, as
#: on Letta).
DEFAULT_PAGE_LIMIT = 100
MAX_PAGE_LIMIT = 1000


class Lenient(BaseModel):
    """Accepts and ignores fields it does not know, as the Letta API does."""

    model_config = ConfigDict(extra="ignore")


class StrictQuery(BaseModel):
    """Query parameters: an unknown one is a 422, since ignoring a filter would answer wrongly."""

    model_config = ConfigDict(extra="forbid")


class PageQuery(StrictQuery):
    before: Id | None = Field(None, description="An id: the items that precede it in this order.")
    after: Id | None = Field(None, description="An id: the items that follow it in this order.")
    limit: int = Field(DEFAULT_PAGE_LIMIT, ge=0, le=MAX_PAGE_LIMIT)
    order: Literal["asc", "desc"] = "desc"
    order_by: Literal["created_at"] = "created_at"


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str


class Error(BaseModel):
    detail: str = Field(description="A sentence saying what went wrong.")
    errors: list[ErrorDetail] | None = Field(None, description="For 422: each invalid field and why.")

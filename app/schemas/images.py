"""Image sources as the Letta API takes them (letta-client's ImageContent `source`): inline base64
data, a URL the model provider fetches, or a Letta file reference that carries its data."""

from __future__ import annotations

import binascii
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from app.schemas.common import Lenient
from app.schemas.limits import MAX_IMAGE_DATA_CHARS, Id, Label

#: `image/<subtype>`, e.g. image/png, image/jpeg, image/webp, image/svg+xml.
_IMAGE_MEDIA_TYPE = re.compile(r"image/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
#: How long an image URL may be (signed object-store URLs run to a few kilobytes).
MAX_IMAGE_URL_CHARS = 8192
#: The `detail` levels OpenAI takes; other providers ignore it.
Detail = Literal["low", "high", "auto"]


def _media_type(value: str) -> str:
    value = value.lower()
    if not _IMAGE_MEDIA_TYPE.fullmatch(value):
        raise ValueError("must be an image media type such as image/png or image/jpeg")
    return value


def _base64(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    try:
        # Strict: the standard alphabet with its padding, no whitespace; what providers accept.
        binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be standard base64 (A-Z, a-z, 0-9, +, / and = padding, no line breaks)") from None
    return value


class Base64ImageSource(Lenient):
    type: Literal["base64"] = "base64"
    media_type: Label
    data: str = Field(max_length=MAX_IMAGE_DATA_CHARS)
    detail: Detail | None = None

    _check_media_type = field_validator("media_type")(_media_type)
    _check_data = field_validator("data")(_base64)


class UrlImageSource(Lenient):
    type: Literal["url"] = "url"
    url: str = Field(max_length=MAX_IMAGE_URL_CHARS)
    detail: Detail | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL (send inline images as a base64 source)")
        return value


class LettaImageSource(Lenient):
    """A file the Letta server stored; Batchline keeps no files, so only the data it carries is used."""

    type: Literal["letta"] = "letta"
    file_id: Id
    media_type: Label | None = None
    data: str | None = Field(None, max_length=MAX_IMAGE_DATA_CHARS)
    detail: Detail | None = None

    _check_media_type = field_validator("media_type")(lambda value: None if value is None else _media_type(value))
    _check_data = field_validator("data")(lambda value: None if value is None else _base64(value))

    @model_validator(mode="after")
    def _carries_its_data(self) -> LettaImageSource:
        if self.data is None or self.media_type is None:
            raise ValueError('a "letta" source needs "data" and "media_type": Batchline stores no files, '
                             'so a file_id alone cannot be resolved')
        return self


def _source_kind(value: Any) -> str | None:
    if isinstance(value, Base64ImageSource | UrlImageSource | LettaImageSource):
        return value.type  # serialising a validated source
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    if kind is None:  # the SDK's source types leave "type" optional: tell them apart by their fields
        kind = "url" if "url" in value else "letta" if "file_id" in value else "base64"
    return kind if kind in ("base64", "url", "letta") else None


ImageSource = Annotated[
    Annotated[Base64ImageSource, Tag("base64")] | Annotated[UrlImageSource, Tag("url")]
    | Annotated[LettaImageSource, Tag("letta")],
    Discriminator(_source_kind, custom_error_type="image_source",
                  custom_error_message='must be an object whose "type" is "base64", "url" or "letta"'),
]

#: Tags of ImageSource, which pydantic puts in error locations right after "source".
SOURCE_TAGS = frozenset({"base64", "url", "letta"})

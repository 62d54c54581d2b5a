"""Tolerant reading of provider answers (issue 12): the adapters' guesses at answer fields must
not turn a service that differs in one name into a lane that fails every call.

A wire model names the one field its read needs as required and every other field `Lenient`:
missing or unreadable, it reads as None (logged by name). Fields no model names are ignored and
logged once per model and name, at debug level and by name only (values may be personal data
or codes), so the first real answers show what the service sends that the adapter does not read.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)

log = logging.getLogger(__name__)

_unexpected: set[tuple[str, str]] = set()


def _or_none(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    try:
        return handler(value)
    except ValidationError:
        log.info("an answer's %s is unreadable; left out", info.field_name)
        return None


T = TypeVar("T")
Lenient = Annotated[T | None, WrapValidator(_or_none)]
"""An optional answer field: None when the service leaves it out or sends something unreadable."""


def present(items: list[T | None] | None) -> list[T]:
    """The readable items of a lenient list."""
    return [item for item in items or () if item is not None]


class Answer(BaseModel):
    """A part of a provider's answer. Subclasses set `provider` (it names the logs)."""

    model_config = ConfigDict(extra="ignore")
    provider: ClassVar[str] = "provider"

    @model_validator(mode="before")
    @classmethod
    def _note_unexpected(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in sorted(set(data) - set(cls.model_fields)):
                if (cls.__name__, name) not in _unexpected:
                    _unexpected.add((cls.__name__, name))
                    log.debug(
                        "%s %s has a field the agent does not read: %s",
                        cls.provider,
                        cls.__name__,
                        name,
                    )
        return data

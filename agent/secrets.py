"""Secrets (API keys, passwords) are read from files or systemd credentials, never from the config
file, and are wrapped so that no log line, repr or traceback can print them."""

from __future__ import annotations

import os
from pathlib import Path


class Secret:
    """A secret value that never prints itself, so it cannot leak through logs or reprs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def credential_path(credential: str) -> Path | None:
    """`$CREDENTIALS_DIRECTORY/<credential>` (systemd `LoadCredential=`), if there is one."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if not creds or not (Path(creds) / credential).is_file():
        return None
    return Path(creds) / credential


def read_secret(path: Path | None, credential: str) -> Secret | None:
    """Read a secret from an explicit file, else from systemd's credentials directory."""
    if path is None:
        path = credential_path(credential)
        if path is None:
            return None
    return Secret(path.read_text(encoding="utf-8").rstrip("\r\n"))

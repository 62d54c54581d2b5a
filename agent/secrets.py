"""Secrets (API keys, passwords) are read from files or systemd credentials, never from the config
file, and are wrapped so that no log line, repr or traceback can print them."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from agent.errors import ErrorCode, ProviderError


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


# Where systemd looks for the unit's `LoadCredential=<id>:lane-agent.<id>` (a bare name), in
# this order: what a command run outside the service (a technician's `check-config` or `diag`)
# reads instead, so it sees the keys the service would get. systemd/lane-agent.service.
CREDSTORE_DIRS = (Path("/etc/credstore"), Path("/run/credstore"), Path("/usr/lib/credstore"))
CREDSTORE_PREFIX = "lane-agent."


def credential_path(credential: str) -> Path | None:
    """`$CREDENTIALS_DIRECTORY/<credential>` inside the service (systemd `LoadCredential=`);
    outside it, the credential store file the unit would load it from, if this user can see
    one."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds:
        path = Path(creds) / credential
        return path if path.is_file() else None
    return next(
        (p for d in CREDSTORE_DIRS if (p := d / f"{CREDSTORE_PREFIX}{credential}").is_file()),
        None,
    )


def read_secret(path: Path | None, credential: str) -> Secret | None:
    """Read a secret from an explicit file, else from systemd's credentials directory."""
    if path is None:
        path = credential_path(credential)
        if path is None:
            return None
    try:
        return Secret(path.read_text(encoding="utf-8").rstrip("\r\n"))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ProviderError(
            ErrorCode.NOT_CONFIGURED, f"{credential}: {path}: {reason or type(exc).__name__}"
        ) from None


def credential_for(section: str, setting: str) -> str:
    """The systemd credential standing in for a `*_file` setting: `providers.giftlocal` and
    `api_key_file` give `giftlocal_api_key`."""
    return f"{section.rsplit('.', 1)[-1]}_{setting.removesuffix('_file')}"


def read_key(section: str, settings: BaseModel, setting: str) -> Secret:
    """The key a provider cannot work without, from the file `setting` names or else from its
    systemd credential. Every provider reads its keys here and `check-config` reads them all,
    so a missing, unreadable or empty key is one line naming the setting, never a traceback.
    Raises `ProviderError(not_configured)`."""
    where = f"{section}.{setting}"
    credential = credential_for(section, setting)
    path: Path | None = getattr(settings, setting)
    if path is None:
        path = credential_path(credential)
        if path is None:
            raise ProviderError(
                ErrorCode.NOT_CONFIGURED,
                f"{where}: key missing: set it to the key's file, or LoadCredential={credential}",
            )
        where = f"{where} (credential {credential})"
    try:
        value = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ProviderError(ErrorCode.NOT_CONFIGURED, f"{where}: {path}: {reason}") from None
    except UnicodeDecodeError:
        raise ProviderError(ErrorCode.NOT_CONFIGURED, f"{where}: {path}: not UTF-8 text") from None
    if not value.strip():
        raise ProviderError(ErrorCode.NOT_CONFIGURED, f"{where}: {path}: the file is empty")
    return Secret(value)

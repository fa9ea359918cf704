"""API keys in the system keyring (``keyring``: Secret Service, macOS Keychain, Windows
Credential Locker), under the service name ``maskloop``; the settings file holds them only
where no keyring backend works (``keyring.backends.fail.Keyring``, a locked or absent
Secret Service). Keys are never logged or shown."""

from __future__ import annotations

import contextlib
import logging

import keyring
import keyring.errors
from keyring.backends import fail

log = logging.getLogger(__name__)

SERVICE = "maskloop"

# hosted backend -> the settings field (and keyring entry) of its API key. "roboflow-sam3" is
# Roboflow's SAM3 on the same account: it shares Roboflow's key rather than storing another
HOSTED_KEY_FIELDS = {"roboflow": "roboflow_key", "roboflow-sam3": "roboflow_key",
                     "fal": "fal_key", "segmind": "segmind_key"}


def key_field(backend: str) -> str | None:
    """The settings field that holds ``backend``'s API key; None for a backend without one
    (local, classical; the MaskLoop server's key is ``server_key``)."""
    return HOSTED_KEY_FIELDS.get(backend)


def available() -> bool:
    """True if a real keyring backend is configured (not the one that always fails)."""
    try:
        return not isinstance(keyring.get_keyring(), fail.Keyring)
    except Exception:  # a broken backend configuration: use the file
        return False


def backend_name() -> str:
    """A short description of the keyring in use, for the settings dialog."""
    try:
        return type(keyring.get_keyring()).__module__.rsplit(".", 1)[-1]
    except Exception:
        return "none"


def get(name: str) -> str | None:
    """The key stored under ``name``; "" if none is stored; None if the keyring failed."""
    if not available():
        return None
    try:
        return keyring.get_password(SERVICE, name) or ""
    except Exception as e:  # NoKeyringError, a locked store, a D-Bus failure
        log.warning("keyring unavailable (%s); API keys stay in the settings file",
                    type(e).__name__)
        return None


def put(name: str, value: str) -> bool:
    """Store ``value`` under ``name`` (an empty value removes it); False if the keyring
    failed (the caller keeps the key in the settings file)."""
    if not available():
        return False
    try:
        if value:
            keyring.set_password(SERVICE, name, value)
        else:
            with contextlib.suppress(keyring.errors.PasswordDeleteError):  # nothing stored
                keyring.delete_password(SERVICE, name)
        return True
    except Exception as e:
        log.warning("keyring unavailable (%s); API keys stay in the settings file",
                    type(e).__name__)
        return False

"""Resolving the client's settings from arguments and environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from ._errors import ConfigurationError

__all__ = ["ENVIRONMENTS", "ClientConfig", "Environment", "mask_key", "resolve_config"]

Environment = Literal["test_mode", "live_mode"]

ENVIRONMENTS: dict[str, str] = {
    "test_mode": "https://test.dodopayments.com",
    "live_mode": "https://live.dodopayments.com",
}

API_KEY_ENV = "DODO_PAYMENTS_API_KEY"
BASE_URL_ENV = "DODO_PAYMENTS_BASE_URL"
ENVIRONMENT_ENV = "DODO_PAYMENTS_ENVIRONMENT"


def mask_key(api_key: str) -> str:
    """A form of ``api_key`` safe to show: its length and last two characters at most."""
    if len(api_key) < 12:
        return "***"
    return f"***{api_key[-2:]} ({len(api_key)} chars)"


@dataclass(frozen=True, repr=False)
class ClientConfig:
    """Resolved connection settings. Its ``repr`` never shows the API key."""

    api_key: str
    base_url: str
    environment: Environment | None

    def __repr__(self) -> str:
        return (
            f"ClientConfig(base_url={self.base_url!r}, environment={self.environment!r}, "
            f"api_key={mask_key(self.api_key)!r})"
        )


def _check_key(api_key: str) -> str:
    key = api_key.strip()
    if not key:
        raise ConfigurationError(f"api_key is empty: pass api_key=... or set {API_KEY_ENV}")
    if any(ch.isspace() or ord(ch) < 0x21 or ord(ch) > 0x7E for ch in key):
        raise ConfigurationError(
            "api_key has characters an HTTP header cannot carry (whitespace, control or "
            "non-ASCII characters); check that the whole key was copied"
        )
    return key


def resolve_config(
    api_key: str | None = None,
    environment: str | None = None,
    base_url: str | None = None,
) -> ClientConfig:
    """Resolve settings: arguments first, then ``DODO_PAYMENTS_*`` variables, then defaults.

    ``base_url`` (or ``DODO_PAYMENTS_BASE_URL``) overrides ``environment``; the environment
    defaults to ``test_mode``. Raises :class:`ConfigurationError` for a missing or malformed
    key, an unknown environment or a base URL that is not http(s).
    """
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    if key is None:
        raise ConfigurationError(f"no API key: pass api_key=... or set {API_KEY_ENV}")
    key = _check_key(key)

    env_name = environment or os.environ.get(ENVIRONMENT_ENV) or None
    if env_name is not None and env_name not in ENVIRONMENTS:
        raise ConfigurationError(
            f"environment must be 'test_mode' or 'live_mode', got {env_name!r}"
        )

    url = base_url or os.environ.get(BASE_URL_ENV) or None
    if url is None:
        url = ENVIRONMENTS[env_name or "test_mode"]
        resolved_env: Environment | None = env_name or "test_mode"  # type: ignore[assignment]
    else:
        resolved_env = env_name  # type: ignore[assignment]
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"base_url must start with http:// or https://, got {url!r}")
    return ClientConfig(api_key=key, base_url=url.rstrip("/"), environment=resolved_env)

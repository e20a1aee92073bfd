"""Only Google may talk to the webhook: the request's token is verified before its body is read."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from gateway import appkeys
from gateway.auth.google_keys import GoogleKeys, check_key_file
from gateway.auth.google_token import GoogleVerifier, TokenRejected
from gateway.errors import Refused
from gateway.settings import Settings

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Google-Assistant-Signature"  # Actions Builder / Actions SDK
LEGACY_HEADER = "Authorization"  # conversation API v2: "Bearer <jwt>" or the bare token


def request_token(request: web.Request) -> str:
    """The JWT the request carries ('' when none)."""
    value = request.headers.get(SIGNATURE_HEADER) or request.headers.get(LEGACY_HEADER) or ""
    scheme, sep, rest = value.strip().partition(" ")
    if sep and scheme.lower() == "bearer":
        return rest.strip()
    return value.strip()


async def check(request: web.Request) -> None:
    """Refused (401, or 503 when keys are unavailable) unless verification is off or the token verifies."""
    project_id = request.app[appkeys.SETTINGS].google.project_id
    if project_id is None:
        return  # verification off (warned at start-up)
    verifier = request.app.get(appkeys.GOOGLE_VERIFIER)
    try:
        if verifier is None:  # fail closed: never let a missing set-up mean "no checks"
            raise TokenRejected("not_configured")
        await verifier.verify(request_token(request))
    except TokenRejected as exc:
        raise Refused(exc.reason, exc.text, status=exc.status) from None


def preflight(settings: Settings) -> None:
    """Refuse to build the app (ConfigError) when verification is on but its key file is unusable."""
    google = settings.google
    if google.project_id is not None and google.jwks_file is not None:
        check_key_file(google.jwks_file)


async def google_verification(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the key cache and verifier while the app runs (or a warning when off)."""
    google = app[appkeys.SETTINGS].google
    if google.project_id is None:
        logger.warning(
            "google.project_id is not set: webhook requests are NOT verified and anyone who knows "
            "the URL can talk to the bots; set GATEWAY_GOOGLE_PROJECT_ID to accept only Google"
        )
        yield
        return
    if google.jwks_file is not None:
        keys = GoogleKeys(file=google.jwks_file)
    else:
        keys = GoogleKeys(url=google.jwks_url)
    async with keys:
        app[appkeys.GOOGLE_VERIFIER] = GoogleVerifier(google.project_id, keys, google.leeway_seconds)
        if google.jwks_file is not None:
            await keys.refresh(strict=True)  # a bad file is a configuration error: refuse to start
            prefetch = None
        else:
            # Fetch in the background: start-up does not depend on Google being reachable.
            prefetch = asyncio.create_task(keys.refresh(), name="google-keys-prefetch")
            await asyncio.sleep(0)  # let it take the lock, so early requests wait for it instead
        logger.info(
            "webhook requests must carry a Google-signed token for project %s (keys: %s)",
            google.project_id,
            keys.source,
        )
        try:
            yield
        finally:
            if prefetch is not None:
                prefetch.cancel()
                await asyncio.gather(prefetch, return_exceptions=True)

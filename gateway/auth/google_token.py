"""Verifying the JWT Google signs for each webhook request: RS256, Google as issuer, our project as aud."""

from __future__ import annotations

import logging
from typing import Any

import jwt

from gateway.auth.google_keys import ALGORITHM, GoogleKeys
from gateway.errors import AuthError

logger = logging.getLogger(__name__)

ISSUERS = ("https://accounts.google.com", "accounts.google.com")
REQUIRED_CLAIMS = ("iss", "aud", "iat", "exp")
# Google's tokens are about 1 KB; anything far larger is not one of them.
MAX_TOKEN_CHARS = 8192

# Metric label -> (HTTP status, reason given to the client). Labels are a fixed, bounded set.
REASONS: dict[str, tuple[int, str]] = {
    "missing_token": (401, "missing Google-Assistant-Signature (or Authorization) token"),
    "malformed": (401, "malformed token"),
    "bad_algorithm": (401, f"token must be signed with {ALGORITHM}"),
    "unknown_key": (401, "token signed with an unknown key"),
    "bad_signature": (401, "token signature does not verify"),
    "expired": (401, "token expired"),
    "not_yet_valid": (401, "token not yet valid"),
    "wrong_audience": (401, "token audience is not this Actions project"),
    "wrong_issuer": (401, "token issuer is not Google"),
    "missing_claim": (401, "token lacks a required claim (iss, aud, iat, exp)"),
    "invalid": (401, "invalid token"),
    # Our side cannot verify right now: not the client's fault, so not a 401.
    "keys_unavailable": (503, "cannot verify the request: Google's signing keys are unavailable"),
    "not_configured": (503, "cannot verify the request: verification is not initialised"),
}


class TokenRejected(AuthError):
    """A webhook token failed verification; `reason` is a metric label from REASONS."""

    def __init__(self, reason: str) -> None:
        status, text = REASONS[reason]
        super().__init__(text)
        self.reason = reason
        self.status = status
        self.text = text


def _reason(exc: jwt.PyJWTError) -> str:
    """Map PyJWT's exception to our label; subclasses come before their bases."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "not_yet_valid"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "wrong_audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "wrong_issuer"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return "missing_claim"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "bad_algorithm"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "bad_signature"
    if isinstance(exc, jwt.DecodeError | jwt.InvalidIssuedAtError):
        return "malformed"
    return "invalid"


class GoogleVerifier:
    """Checks tokens against one Actions project id with keys from a GoogleKeys cache."""

    def __init__(self, project_id: str, keys: GoogleKeys, leeway_seconds: float) -> None:
        self.project_id = project_id
        self.keys = keys
        self.leeway = leeway_seconds

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or TokenRejected naming why (the token itself is never logged)."""
        if not token:
            raise TokenRejected("missing_token")
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise TokenRejected("malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected("malformed") from None
        # Decided before any key is touched: `none` and HS256-with-the-public-key never get further.
        if header.get("alg") != ALGORITHM:
            raise TokenRejected("bad_algorithm")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenRejected("malformed")
        candidates = await self.keys.lookup(kid)
        if not candidates:
            raise TokenRejected("unknown_key" if self.keys.loaded else "keys_unavailable")
        for key in candidates:
            try:
                return jwt.decode(
                    token,
                    key,
                    algorithms=[ALGORITHM],
                    audience=self.project_id,
                    issuer=ISSUERS,
                    leeway=self.leeway,
                    options={"require": list(REQUIRED_CLAIMS)},
                )
            except jwt.InvalidSignatureError:
                continue  # without a kid, another key may be the one
            except jwt.PyJWTError as exc:
                raise TokenRejected(_reason(exc)) from None
        raise TokenRejected("bad_signature")

    def describe(self) -> dict[str, Any]:
        """JSON-friendly settings and key state."""
        return {
            "enabled": True,
            "project_id": self.project_id,
            "issuers": list(ISSUERS),
            "leeway_seconds": self.leeway,
            "keys": self.keys.describe(),
        }

"""GET /admin/status: the gateway's security posture and bot states, for operators holding the admin token."""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway import appkeys
from gateway.auth.admin import require_admin


async def admin_status(request: web.Request) -> web.Response:
    """Who may call the webhook, which models may load, and each bot's state (never a secret)."""
    require_admin(request)  # admin_guard already checked; this keeps the handler safe on its own
    app = request.app
    settings = app[appkeys.SETTINGS]
    verifier = app.get(appkeys.GOOGLE_VERIFIER)
    pool = app[appkeys.POOL]
    body = {
        "google_verification": verifier.describe() if verifier is not None else {"enabled": False},
        "models": {"hmac_required": settings.models.hmac_key is not None},
        "bots": {
            lang: {"state": bot.state.value, "model": bot.model.name if bot.model else None}
            for lang, bot in pool.bots.items()
        },
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")

"""Fallback for the usual deployment's nginx + Lua front (bench/nginx.py) when nginx or its Lua module is
missing: the same locale routing in aiohttp, forwarding the body as is to that language's `rasa run`.

    python -m bench.proxy --port 9000 --route en=http://127.0.0.1:5005 --route pl=... --route de=...

Routes like the Lua block: `user.locale`'s first two letters, the first route when that language has none.
One pooled keep-alive client per process. Its CPU is Python's, not nginx's: results say which front ran.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import aiohttp
from aiohttp import web

ROUTES = web.AppKey("routes", dict)
CLIENT = web.AppKey("client", aiohttp.ClientSession)
RASA_PATH = "/webhooks/google/webhook"


def lang_of(body: Any, langs: list[str]) -> str:
    """The language a request goes to: `user.locale`[:2], or the first of `langs` when it is not one."""
    user = body.get("user") if isinstance(body, dict) else None
    locale = user.get("locale") if isinstance(user, dict) else None
    lang = locale[:2].lower() if isinstance(locale, str) else ""
    return lang if lang in langs else langs[0]


async def webhook(request: web.Request) -> web.Response:
    """POST /webhook/google: the body, unchanged, to the language's `rasa run` Google connector."""
    raw = await request.read()
    try:
        body = json.loads(raw)
    except ValueError:
        return web.json_response({"error": "body is not a JSON object"}, status=400)
    if not isinstance(body, dict):
        return web.json_response({"error": "body is not a JSON object"}, status=400)
    routes = request.app[ROUTES]
    upstream = routes[lang_of(body, list(routes))] + RASA_PATH
    headers = {"Content-Type": "application/json"}
    async with request.app[CLIENT].post(upstream, data=raw, headers=headers) as resp:
        data = await resp.read()
        return web.Response(body=data, status=resp.status, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app(routes: dict[str, str]) -> web.Application:
    """The proxy application with one shared client session."""
    app = web.Application()
    app[ROUTES] = routes

    async def client(app: web.Application) -> Any:
        # Sanic closes idle connections after 5 s: drop ours first so no request lands on a closing one.
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=4)
        async with aiohttp.ClientSession(connector=connector) as session:
            app[CLIENT] = session
            yield

    app.cleanup_ctx.append(client)
    app.router.add_post("/webhook/google", webhook)
    app.router.add_post("/google_action", webhook)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> int:
    """Entry point of `python -m bench.proxy`."""
    parser = argparse.ArgumentParser(prog="python -m bench.proxy", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--route", action="append", required=True, help="LANG=http://127.0.0.1:PORT")
    args = parser.parse_args()
    routes = dict(item.split("=", 1) for item in args.route)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # plain asyncio still works, only slower
        pass
    web.run_app(make_app(routes), host="127.0.0.1", port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Stand-in for the usual nginx + Lua front: route Actions Builder webhooks by locale to `rasa run` REST.

    python -m bench.proxy --port 9000 --route en=http://127.0.0.1:5005 --route pl=... --route de=...

Maps the Actions Builder request to Rasa's REST channel (`{"sender", "message"}`) and the list of bot
messages back to an Actions Builder response, keeping one pooled keep-alive client per process.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import aiohttp
from aiohttp import web

ROUTES = web.AppKey("routes", dict)
CLIENT = web.AppKey("client", aiohttp.ClientSession)


def _lang(body: dict[str, Any], routes: dict[str, str]) -> str:
    locale = (body.get("session") or {}).get("languageCode") or (body.get("user") or {}).get("locale") or ""
    lang = str(locale).split("-", 1)[0].lower()
    return lang if lang in routes else next(iter(routes))


async def webhook(request: web.Request) -> web.Response:
    """POST /webhook/google: one REST call to the language's Rasa, answered in the Actions Builder shape."""
    body = await request.json()
    routes = request.app[ROUTES]
    session = body.get("session") or {}
    intent = body.get("intent") or {}
    text = "/greet" if intent.get("name") == "actions.intent.MAIN" else intent.get("query", "")
    upstream = routes[_lang(body, routes)] + "/webhooks/rest/webhook"
    payload = {"sender": session.get("id", ""), "message": text}
    async with request.app[CLIENT].post(upstream, json=payload) as resp:
        if resp.status != 200:
            return web.json_response({"error": f"rasa answered {resp.status}"}, status=502)
        messages = await resp.json()
    speech = " ".join(m["text"] for m in messages if m.get("text"))
    prompt: dict[str, Any] = {"override": False, "firstSimple": {"speech": speech, "text": speech}}
    titles = [b["title"][:25] for m in messages for b in m.get("buttons") or [] if b.get("title")]
    if titles:
        prompt["suggestions"] = [{"title": title} for title in titles[:8]]
    out = {"session": {"id": session.get("id", ""), "params": session.get("params") or {}}, "prompt": prompt}
    return web.Response(text=json.dumps(out), content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app(routes: dict[str, str]) -> web.Application:
    """The proxy application with one shared client session."""
    app = web.Application()
    app[ROUTES] = routes

    async def client(app: web.Application) -> Any:
        connector = aiohttp.TCPConnector(limit=0)
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

"""`make bench`'s usual deployment is the real thing: `rasa run` with a Google connector, an action server,
and nginx + Lua routing by `user.locale` (or, when nginx is missing, the Python proxy, and it says so)."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bench import conversations as conv
from bench import nginx, proxy
from bench.procs import Redis, free_port, wait_until
from bench.systems import choose_router, start_usual

NGINX = nginx.find()


def post(url: str, raw: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(url, raw, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def redis() -> Iterator[Redis]:
    server = Redis()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("router", ["auto", "python"])
def test_usual_deployment_answers_a_conversation_in_actions_builder_v3(
    model_paths: dict[str, Path], redis: Redis, router: str
) -> None:
    system = start_usual({"en": model_paths["en"]}, redis.port, 300, router)
    try:
        expected_router = "nginx+lua" if router == "auto" and isinstance(NGINX, nginx.Nginx) else "python"
        assert system.router == expected_router
        said = system.notes[0]
        if expected_router == "nginx+lua":
            assert said.startswith("router: nginx ") and "+ Lua" in said
        elif router == "auto":  # no usable nginx here: the fallback is reported with the reason
            assert said == f"router: Python proxy (bench/proxy.py), nginx + Lua not available: {NGINX}"
        else:
            assert said.startswith("router: Python proxy")
        session = f"usual-{router}"
        # The whole script, booking form included (its validation runs on the action server).
        for (text, response), allowed in zip(conv.SCRIPTS["en"], conv.expected("en"), strict=True):
            body = json.dumps(conv.builder_request("en", session, text)).encode()
            status, answer = post(system.url + "/webhook/google", body)
            assert status == 200, answer
            assert answer["session"] == {"id": session, "params": {}}
            prompt = answer["prompt"]
            assert prompt["firstSimple"]["speech"] in allowed, (text, prompt)
            assert prompt["firstSimple"]["text"] == prompt["firstSimple"]["speech"]
            if response == "utter_help":
                assert prompt["suggestions"] == [{"title": "Opening hours"}, {"title": "Book a table"}]
            else:
                assert "suggestions" not in prompt
        welcome = {
            **conv.builder_request("en", session + "-main", ""),
            "intent": {"name": "actions.intent.MAIN"},
        }
        status, answer = post(system.url + "/webhook/google", json.dumps(welcome).encode())
        assert status == 200 and answer["prompt"]["firstSimple"]["speech"] in conv.expected("en")[0]
        # Bad input: a 400 naming what is wrong, from the front and from the connector behind it.
        assert post(system.url + "/webhook/google", b"[1]") == (400, {"error": "body is not a JSON object"})
        rasa_url = system.probes[0].rstrip("/") + "/webhooks/google/webhook"
        no_session = json.dumps({"intent": {"query": "hi"}, "user": {"locale": "en-US"}}).encode()
        assert post(rasa_url, no_session) == (400, {"error": "field session.id is required"})
        bad_query = json.dumps({"session": {"id": "s"}, "intent": {"query": 4}}).encode()
        assert post(rasa_url, bad_query) == (400, {"error": "field intent.query must be a string"})
        system.check_alive()
    finally:
        system.stop()


def test_the_router_choice_says_which_front_runs_and_why() -> None:
    if isinstance(NGINX, nginx.Nginx):
        assert choose_router("nginx") == (NGINX, f"router: nginx {NGINX.version} + Lua ({NGINX.binary})")
        assert choose_router("auto") == choose_router("nginx")
    else:
        with pytest.raises(RuntimeError, match=f"--router nginx: {re.escape(NGINX)}"):
            choose_router("nginx")
        assert choose_router("auto")[0] is None
    assert choose_router("python") == (
        None,
        "router: Python proxy (bench/proxy.py), as asked (--router python)",
    )
    with pytest.raises(ValueError, match="router must be one of auto, nginx, python, not 'haproxy'"):
        choose_router("haproxy")


# Locales as Google sends them, and the odd ones: both fronts must send each to the same language.
LOCALE_BODIES: list[Any] = [
    {"user": {"locale": locale}}
    for locale in (
        "en-US",
        "en-GB",
        "pl-PL",
        "de-DE",
        "de-AT",
        "de-CH",
        "DE-de",
        "PL",
        "fr-FR",
        "e",
        "",
        "ende",
    )
] + [{"user": {"locale": None}}, {"user": {"locale": 42}}, {"user": "en-US"}, {"session": {"id": "x"}}, {}]


@pytest.fixture
async def upstreams(aiohttp_server: Any) -> dict[str, int]:
    """One small HTTP server per language that answers with its language: what the front chose."""
    ports = {}
    for lang in ("en", "pl", "de"):

        async def which(request: web.Request, lang: str = lang) -> web.Response:
            return web.json_response({"lang": lang, "body": await request.json()})

        app = web.Application()
        app.router.add_post(proxy.RASA_PATH, which)
        ports[lang] = (await aiohttp_server(app)).port
    return ports


async def test_python_proxy_routes_by_the_first_two_letters_of_user_locale(
    aiohttp_client: Any, upstreams: dict[str, int]
) -> None:
    client = await aiohttp_client(proxy.make_app({k: f"http://127.0.0.1:{p}" for k, p in upstreams.items()}))
    for body in LOCALE_BODIES:
        resp = await client.post("/webhook/google", json=body)
        assert resp.status == 200
        assert await resp.json() == {"lang": proxy.lang_of(body, list(upstreams)), "body": body}
    assert [proxy.lang_of(b, ["en", "pl", "de"]) for b in LOCALE_BODIES[:9]] == [
        *("en", "en", "pl", "de", "de", "de", "de", "pl", "en")
    ]
    resp = await client.post("/webhook/google", data=b"not json")
    assert (resp.status, await resp.json()) == (400, {"error": "body is not a JSON object"})


@pytest.mark.skipif(
    not isinstance(NGINX, nginx.Nginx),
    reason=f"nginx + Lua not installed here ({NGINX}); the bench uses the Python proxy, tested above",
)
async def test_nginx_lua_routes_exactly_like_the_python_proxy(
    upstreams: dict[str, int], tmp_path: Path
) -> None:
    assert isinstance(NGINX, nginx.Nginx)
    assert nginx.check(NGINX, tmp_path, upstreams) is None  # `nginx -t` accepts the generated config
    port = free_port()
    front = nginx.start(NGINX, port, upstreams)
    try:
        url = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(wait_until, [front], lambda: post_ok(url + "/healthz"), 30)
        for path in nginx.WEBHOOK_PATHS:
            for body in LOCALE_BODIES:
                status, answer = await asyncio.to_thread(post, url + path, json.dumps(body).encode())
                assert status == 200, (body, answer)
                assert answer == {"lang": proxy.lang_of(body, list(upstreams)), "body": body}
        for raw in (b"not json", b"[1]", b'"en-US"'):
            status, answer = await asyncio.to_thread(post, url + "/webhook/google", raw)
            assert (status, answer) == (400, {"error": "body is not a JSON object"})
        front.check_alive()
    finally:
        front.stop()


def post_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, ConnectionError):
        return False


def test_rendered_config_keeps_everything_in_its_own_folder(tmp_path: Path) -> None:
    binary = NGINX.binary if isinstance(NGINX, nginx.Nginx) else "/usr/sbin/nginx"
    text = nginx.render(nginx.Nginx(binary, (), "test"), tmp_path, 8123, {"en": 5005, "pl": 5006})
    assert "daemon off;" in text and "listen 127.0.0.1:8123;" in text
    assert f"pid {tmp_path}/nginx.pid;" in text and "error_log stderr" in text
    assert (
        "upstream rasa_en { server 127.0.0.1:5005;" in text
        and "upstream rasa_pl { server 127.0.0.1:5006;" in text
    )
    assert 'LANGS = { ["en"] = true, ["pl"] = true }' in text and 'DEFAULT = "en"' in text
    temp_paths = [line for line in text.splitlines() if "_temp_path" in line]
    assert len(temp_paths) == 5 and all(f" {tmp_path}/" in line for line in temp_paths)

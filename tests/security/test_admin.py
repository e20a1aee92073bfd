"""Admin routes: 404 while admin is off, 401 without or with a wrong token, 200 with the right one."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from gateway.errors import ConfigError
from gateway.metrics import REGISTRY
from gateway.settings import load_settings
from tests.security.conftest import gateway_settings, start_gateway

TOKEN = "admin-token-0123456789-abcdef"


def failures(reason: str) -> float:
    value = REGISTRY.get_sample_value("gateway_auth_failures_total", {"kind": "admin", "reason": reason})
    return value or 0.0


@pytest.fixture
async def admin_on(aiohttp_client: Any) -> Any:
    return await start_gateway(aiohttp_client, gateway_settings(**{"admin.token": TOKEN}))


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_token"),
        ({"Authorization": "Bearer"}, "missing_token"),
        ({"Authorization": f"Basic {TOKEN}"}, "missing_token"),
        ({"Authorization": TOKEN}, "missing_token"),
        ({"Authorization": "Bearer wrong-token-0123456789-abcdef"}, "wrong_token"),
        ({"Authorization": f"Bearer {TOKEN[:-1]}"}, "wrong_token"),
        ({"Authorization": f"Bearer {TOKEN}x"}, "wrong_token"),
        ({"Authorization": f"Bearer {TOKEN.upper()}"}, "wrong_token"),
    ],
)
async def test_admin_without_or_with_wrong_token_is_401(
    admin_on: Any, headers: dict[str, str], reason: str
) -> None:
    before = failures(reason)
    resp = await admin_on.get("/admin/status", headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    body = await resp.json()
    assert set(body) == {"error"}
    assert TOKEN not in body["error"]
    assert failures(reason) == before + 1


async def test_admin_with_right_token_is_200(admin_on: Any) -> None:
    resp = await admin_on.get("/admin/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200
    body = await resp.json()
    assert body["google_verification"] == {"enabled": False}
    assert body["models"] == {"hmac_required": False}
    assert set(body["bots"]) == {"en", "pl", "de"}
    assert TOKEN not in await resp.text()


async def test_admin_routes_are_absent_without_a_token(aiohttp_client: Any) -> None:
    client = await start_gateway(aiohttp_client, gateway_settings())
    for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
        resp = await client.get("/admin/status", headers=headers)
        assert resp.status == 404
        unknown = await client.get("/no/such/route")
        assert await resp.json() == await unknown.json()  # indistinguishable from any unknown path


async def test_every_admin_route_is_guarded_even_one_that_forgets_to_check(aiohttp_client: Any) -> None:
    from gateway.app import create_app

    async def careless(request: web.Request) -> web.Response:
        return web.json_response({"secret": "state"})

    app = create_app(gateway_settings(**{"admin.token": TOKEN}), resolve_models=lambda _: {})
    app.router.add_post("/admin/debug/{lang}/dump", careless)
    client = await aiohttp_client(app)
    resp = await client.post("/admin/debug/en/dump")
    assert resp.status == 401
    resp = await client.post("/admin/debug/en/dump", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200
    # An unknown admin path does not reveal whether it exists to someone without the token.
    assert (await client.get("/admin/nothing-here")).status == 401


@pytest.mark.parametrize("token", ["short", "fifteen-chars!!"])
def test_short_admin_token_refuses_to_start(token: str) -> None:
    with pytest.raises(ConfigError, match=r"admin\.token: too short"):
        load_settings(env={"GATEWAY_ADMIN_TOKEN": token})


def test_empty_admin_token_means_admin_off() -> None:
    assert load_settings(env={"GATEWAY_ADMIN_TOKEN": ""}).admin.token is None

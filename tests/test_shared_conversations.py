"""Two real gateway processes sharing conversations through a real redis-server, over real HTTP.

The processes (and the redis-server) are started once for this module; the outage tests restore Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from gateway.settings import load_settings
from tests.support import GatewayProcess, RedisServer, builder_request, free_port, responses

SETTINGS = load_settings()
# The pair's deadline and lock lease: far above what turns take even on a throttled, shared CPU, so the
# answers tested here never depend on the machine's speed (the deadline itself: test_webhook_turns.py).
PAIR_DEADLINE = 60.0
PAIR_LEASE = 120.0
# A request may take the deadline plus HTTP overhead; anything longer is a hang.
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=PAIR_DEADLINE + 5)
LOCALES = {"en": "en-US", "pl": "pl-PL", "de": "de-DE"}
BOOK = {
    "en": "I would like to book a table",
    "pl": "chciałbym zarezerwować stolik",
    "de": "ich möchte einen Tisch reservieren",
}


def unavailable(lang: str) -> str:
    return SETTINGS.bots[lang].prompts.unavailable


def booked(lang: str, people: str) -> list[str]:
    return [t.replace("{people}", people) for t in responses(lang, "utter_booked")]


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[RedisServer]:
    """The module's redis-server (the tests below stop and restart it)."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pair(models_dir: Path, shared_redis: RedisServer) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    """Gateways A and B on their own ports, both using the module's Redis."""
    env = {
        "GATEWAY_REDIS_URL": shared_redis.url,
        "GATEWAY_BOTS_MODELS_DIR": str(models_dir),
        "GATEWAY_BOTS_TRAIN_MISSING": "false",
        "GATEWAY_MONITOR_INTERVAL_SECONDS": "0",
        "GATEWAY_SERVER_DEADLINE_SECONDS": str(PAIR_DEADLINE),
        "GATEWAY_TRACKERS_LOCK_LEASE_SECONDS": str(PAIR_LEASE),
    }
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(GatewayProcess.start(free_port(), env, wait_ready=False))
        b = stack.enter_context(GatewayProcess.start(free_port(), env, wait_ready=False))
        a.wait_ready(180)
        b.wait_ready(180)
        yield a, b


async def say(
    http: aiohttp.ClientSession, gw: GatewayProcess, text: str, session: str, lang: str = "en"
) -> tuple[int, str]:
    body = builder_request(text, LOCALES[lang], session)
    async with http.post(gw.url + "/webhook/google", json=body) as resp:
        answer = await resp.json()
        if resp.status != 200:
            return resp.status, str(answer)
    return resp.status, str(answer["prompt"]["firstSimple"]["speech"])


async def stored_events(redis_url: str, lang: str, session: str) -> list[dict[str, Any]]:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        blob = await redis.get(f"gateway:production:{lang}:{{{lang}:{session}}}:tracker")
    finally:
        await redis.close(close_connection_pool=True)
    assert blob is not None, f"no tracker stored for {session}"
    return list(orjson.loads(blob)["events"])


async def stored_turns(redis_url: str, session: str, said: list[str], timeout: float = 120) -> None:
    """Wait until the conversation's stored tracker holds exactly the user turns `said` (a turn is
    stored whole when its lock is released); the timeout only stops a broken test."""
    redis = aioredis.Redis.from_url(redis_url)
    loop = asyncio.get_running_loop()
    until = loop.time() + timeout
    try:
        while True:
            blob = await redis.get(f"gateway:production:en:{{en:{session}}}:tracker")
            events = orjson.loads(blob)["events"] if blob else []
            users = [e["text"] for e in events if e["event"] == "user"]
            if users == said:
                return
            assert loop.time() < until, f"{session}: stored {users}, expected {said}"
            await asyncio.sleep(0.05)
    finally:
        await redis.close(close_connection_pool=True)


def assert_stored_once_in_order(events: list[dict[str, Any]]) -> None:
    identities = [(e["event"], e["timestamp"], e.get("name")) for e in events]
    assert len(identities) == len(set(identities)), "an event is stored twice"
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps), "events are stored out of order (turns overlapped)"
    message_ids = [e["message_id"] for e in events if e["event"] == "user"]
    assert len(message_ids) == len(set(message_ids)), "a user message is stored twice"


@pytest.mark.parametrize("lang", ["en", "pl", "de"])
async def test_turns_alternating_between_processes_keep_the_slot(
    pair: tuple[GatewayProcess, GatewayProcess], shared_redis: RedisServer, lang: str
) -> None:
    a, b = pair
    session = f"alt-{uuid.uuid4().hex}"
    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as http:
        status, ask = await say(http, a, BOOK[lang], session, lang)
        assert (status, ask in responses(lang, "utter_ask_people")) == (200, True)
        status, done = await say(http, b, "4", session, lang)
    assert (status, done in booked(lang, "4")) == (200, True)
    events = await stored_events(shared_redis.url, lang, session)
    assert [e["text"] for e in events if e["event"] == "user"] == [BOOK[lang], "4"]
    assert_stored_once_in_order(events)


FIFTY = {"en": "fifty", "pl": "pięćdziesiąt", "de": "fünfzig"}


@pytest.mark.parametrize("lang", ["en", "pl", "de"])
async def test_custom_actions_alternating_between_processes_keep_consistent_slots(
    pair: tuple[GatewayProcess, GatewayProcess], shared_redis: RedisServer, lang: str
) -> None:
    # Each process runs the bot's validation action in process; the slot it sets is the conversation's.
    a, b = pair
    session = f"alt-actions-{uuid.uuid4().hex}"
    ask = responses(lang, "utter_ask_people")
    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as http:
        turns = [(a, BOOK[lang]), (b, "0"), (a, FIFTY[lang]), (b, "4")]
        heard = [await say(http, gw, text, session, lang) for gw, text in turns]
    too_few = [t.replace("{low}", "1") for t in responses(lang, "utter_people_too_few")]
    too_many = [t.replace("{high}", "20") for t in responses(lang, "utter_people_too_many")]
    assert [status for status, _ in heard] == [200] * 4
    assert heard[0][1] in ask and heard[1][1] in too_few and heard[2][1] in too_many
    assert heard[3][1] in booked(lang, "4")
    events = await stored_events(shared_redis.url, lang, session)
    assert_stored_once_in_order(events)
    people = [e["value"] for e in events if e["event"] == "slot" and e["name"] == "people"]
    # Extraction sets each value, validation clears a rejected one and confirms "4".
    assert people == ["0", None, FIFTY[lang], None, "4", "4"]


async def test_200_concurrent_conversations_over_two_processes(
    pair: tuple[GatewayProcess, GatewayProcess], shared_redis: RedisServer
) -> None:
    a, b = pair
    rng = random.Random(4)
    sessions = {f"many-{i}-{uuid.uuid4().hex[:8]}": str(rng.randint(2, 9)) for i in range(200)}
    script = ["hello", "book a table", None]  # None: the party size
    late = SETTINGS.bots["en"].prompts.timeout

    async def conversation(http: aiohttp.ClientSession, index: int, session: str, people: str) -> list[str]:
        answers: list[str] = []
        said: list[str] = []
        for turn, text in enumerate(script):
            gw = (a, b)[(index + turn) % 2]  # every conversation alternates processes
            status, speech = await say(http, gw, text or people, session)
            assert status == 200, speech
            said.append(text or people)
            if speech == late:
                # A machine too busy even for PAIR_DEADLINE: the user heard "try again" and the turn
                # finishes in the background. Go on once it is stored, as a user answering would.
                await stored_turns(shared_redis.url, session, said)
            answers.append(speech)
        return answers

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120), connector=connector) as http:
        results = await asyncio.gather(
            *(conversation(http, i, s, p) for i, (s, p) in enumerate(sessions.items()))
        )

    for (session, people), (greet, ask, done) in zip(sessions.items(), results, strict=True):
        assert greet in [*responses("en", "utter_greet"), late]
        assert ask in [*responses("en", "utter_ask_people"), late]
        assert done in [*booked("en", people), late]
        events = await stored_events(shared_redis.url, "en", session)
        assert [e["text"] for e in events if e["event"] == "user"] == ["hello", "book a table", people]
        bot = [e["metadata"]["utter_action"] for e in events if e["event"] == "bot"]
        assert bot == ["utter_greet", "utter_ask_people", "utter_booked"]
        assert_stored_once_in_order(events)


async def test_simultaneous_turns_of_one_conversation_on_both_processes_are_serialised(
    pair: tuple[GatewayProcess, GatewayProcess], shared_redis: RedisServer
) -> None:
    # Not what Google does, but what a retry storm does: each turn must see the one before it.
    a, b = pair
    sessions = [f"race-{uuid.uuid4().hex}" for _ in range(20)]
    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as http:
        answers = await asyncio.gather(*(say(http, gw, "hello", s) for s in sessions for gw in (a, b, a, b)))
    assert all(status == 200 and speech in responses("en", "utter_greet") for status, speech in answers)
    for session in sessions:
        events = await stored_events(shared_redis.url, "en", session)
        assert [e["text"] for e in events if e["event"] == "user"] == ["hello"] * 4
        assert_stored_once_in_order(events)


async def test_redis_stopped_mid_traffic_gives_polite_prompts_then_recovers(
    pair: tuple[GatewayProcess, GatewayProcess], shared_redis: RedisServer
) -> None:
    a, b = pair
    seen: list[tuple[str, int, str]] = []  # (phase, status, speech)
    phase = "before"
    stop, healthy = asyncio.Event(), asyncio.Event()

    async def user(http: aiohttp.ClientSession, index: int) -> None:
        turn = 0
        while not stop.is_set():
            gw = (a, b)[(index + turn) % 2]
            current = phase
            status, speech = await say(http, gw, "hello", f"outage-{index}-{turn}")
            seen.append((current, status, speech))
            if recovered(seen):
                healthy.set()
            turn += 1
            await asyncio.sleep(0.05)

    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as http:
        users = [asyncio.create_task(user(http, i)) for i in range(8)]
        await asyncio.sleep(1.0)
        phase = "down"
        await asyncio.to_thread(shared_redis.stop)
        await asyncio.sleep(2.0)
        phase = "restarted"
        await asyncio.to_thread(shared_redis.start)
        # Recovered when the users' latest answers are normal again (bounded, so a failure cannot hang).
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(healthy.wait(), 60)
        stop.set()
        await asyncio.gather(*users)

    assert all(status == 200 for _, status, _ in seen), [s for s in seen if s[1] != 200]
    greet = responses("en", "utter_greet")
    assert all(speech in greet or speech == unavailable("en") for _, _, speech in seen)
    assert any(p == "before" and s in greet for p, _, s in seen)
    assert any(p == "down" and s == unavailable("en") for p, _, s in seen)
    assert recovered(seen)


def recovered(seen: list[tuple[str, int, str]]) -> bool:
    # Every user's last few answers after the restart are normal ones.
    after = [speech for p, _, speech in seen if p == "restarted"]
    return len(after) >= 16 and all(s in responses("en", "utter_greet") for s in after[-16:])


async def test_a_stalled_redis_gives_polite_prompts_within_the_deadline(
    pair: tuple[GatewayProcess, GatewayProcess], shared_redis: RedisServer
) -> None:
    a, b = pair
    admin = aioredis.Redis.from_url(shared_redis.url, socket_timeout=30)
    try:
        # Redis accepts connections but answers nothing for 6 s (longer than the socket timeouts).
        await admin.execute_command("CLIENT", "PAUSE", "6000", "ALL")
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as http:
            stalled = await asyncio.gather(
                *(say(http, gw, "hello", f"stall-{uuid.uuid4().hex}") for gw in (a, b))
            )
            assert stalled == [(200, unavailable("en"))] * 2
            await admin.ping()  # answered once the pause is over; nothing was restarted
            resumed = await asyncio.gather(
                *(say(http, gw, "hello", f"after-{uuid.uuid4().hex}") for gw in (a, b))
            )
    finally:
        await admin.close(close_connection_pool=True)
    assert all(status == 200 and speech in responses("en", "utter_greet") for status, speech in resumed)

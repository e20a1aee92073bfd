"""`make bench ARGS="--channel ..."`: the load generator's conversations are understood on every channel."""

from __future__ import annotations

import pytest

from bench import conversations as conv
from bench import loadgen
from tests.support import GatewayProcess


@pytest.mark.parametrize("channel", sorted(conv.CHANNEL_PATHS))
async def test_loadgen_conversations_succeed_on_each_channel(gateway: GatewayProcess, channel: str) -> None:
    requests = 2 * sum(len(conv.SCRIPTS[lang]) for lang in conv.LANGS)
    result = await loadgen.run(
        gateway.url, conv.CHANNEL_PATHS[channel], 2, 120.0, requests, conv.LANGS, [], 0.1, 30.0, channel
    )
    assert result["requests"] == requests
    assert (result["errors"], result["wrong"]) == (0, 0), result

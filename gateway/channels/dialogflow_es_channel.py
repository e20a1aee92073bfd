"""The Dialogflow ES channel: DialogflowCodec (dialogflow_es.py) on its own path, with ES's verification."""

from __future__ import annotations

from aiohttp import hdrs, web

from gateway.auth import static
from gateway.channels.channel import Channel
from gateway.channels.dialogflow_es import DialogflowCodec


class DialogflowEsChannel(Channel):
    """Dialogflow ES fulfillment on its own path, verified the ways ES offers: basic auth, static headers.

    ES sends no Google-signed token, so on Google's endpoint it is refused while google.project_id is set;
    here it works with verification on. Each configured mechanism must pass.
    """

    name = "dialogflow_es"
    codecs = (DialogflowCodec(),)

    @property
    def verified(self) -> bool:
        return self.settings.username is not None or bool(self.settings.headers)

    @property
    def credentials_hint(self) -> str:
        return "channels.dialogflow_es.username/password and/or channels.dialogflow_es.headers"

    async def admit(self, request: web.Request) -> None:
        if self.settings.username is not None and self.settings.password is not None:
            static.basic(
                request.headers.get(hdrs.AUTHORIZATION, ""), self.settings.username, self.settings.password
            )
        if self.settings.headers:
            static.headers(request.headers, self.settings.headers)

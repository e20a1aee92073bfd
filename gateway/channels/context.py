"""What a request says about its caller, handed to the bot as Rasa's `UserMessage.metadata`.

Custom actions read it as `tracker.latest_message["metadata"]`. The names are channel-neutral, so any
channel can fill them the same way (all optional; absent when the request does not say):

- `channel`: the webhook shape (actions_builder, conversation_v2, dialogflow);
- `locale`: the request's locale, e.g. "en-US";
- `time_zone`: the caller's IANA time zone, e.g. "Europe/Warsaw" (Google: `device.timeZone.id`);
- `capabilities`: what the caller's surface can do, lower case: speech, rich_response, long_form_audio,
  interactive_canvas, web_link, home_storage (Google v3 `device.capabilities`; v2 `surface.capabilities`
  mapped onto the same names);
- `user_verification`: "verified" or "guest" (Google `user.verificationStatus` / `userVerificationStatus`);
- `session_params`, `intent_params`, `user_params`, `home_params`: the request's parameters, the same names in
  every generation (gateway/channels/params.py): v3 `session.params` without the gateway's `_gateway` key,
  `intent.params` as name -> resolved value (Dialogflow `queryResult.parameters`), `user.params` (legacy
  `user.userStorage` decoded from actions-on-google-nodejs' {"data": ...} JSON string), `home.params`.
"""

from __future__ import annotations

import re

from gateway.channels import fields
from gateway.channels.protocol import JSON

_ZONE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,3}$")
# Conversation webhook (v2) capability names, mapped onto the v3 names.
_V2_CAPABILITIES = {
    "actions.capability.AUDIO_OUTPUT": "speech",
    "actions.capability.SCREEN_OUTPUT": "rich_response",
    "actions.capability.MEDIA_RESPONSE_AUDIO": "long_form_audio",
    "actions.capability.INTERACTIVE_CANVAS": "interactive_canvas",
    "actions.capability.WEB_BROWSER": "web_link",
}
_VERIFICATION = {"VERIFIED": "verified", "GUEST": "guest"}


def google_context(
    channel: str, locale: str, user: JSON, device: JSON, surface: JSON, where: str = ""
) -> JSON:
    """The metadata of a Google request from its `user`, `device` and (v2) `surface` objects.

    Wrong types are a BadRequest naming the field (`where` prefixes the field names); unknown values
    are left out.
    """
    context: JSON = {"channel": channel, "locale": locale}
    zone_object = fields.obj(device, "timeZone", f"{where}device.timeZone")
    zone = fields.string(zone_object, "id", f"{where}device.timeZone.id")
    if _ZONE_RE.match(zone) and len(zone) <= 64:
        context["time_zone"] = zone
    names = _strings(device, "capabilities", f"{where}device.capabilities")
    capabilities = [_capability(name) for name in names]
    for index, item in enumerate(fields.objects(surface, "capabilities", f"{where}surface.capabilities")):
        name = fields.string(item, "name", f"{where}surface.capabilities[{index}].name")
        capabilities.append(_V2_CAPABILITIES.get(name, ""))
    if any(capabilities):
        context["capabilities"] = sorted({name for name in capabilities if name})
    status = fields.string(user, "verificationStatus", f"{where}user.verificationStatus") or fields.string(
        user, "userVerificationStatus", f"{where}user.userVerificationStatus"
    )
    if status in _VERIFICATION:
        context["user_verification"] = _VERIFICATION[status]
    return context


def _capability(name: str) -> str:
    return name.lower() if re.fullmatch(r"[A-Z_]{1,40}", name) else ""


def _strings(parent: JSON, key: str, where: str) -> list[str]:
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        from gateway.errors import BadRequest

        raise BadRequest(f"field {where} must be a list of strings")
    return value

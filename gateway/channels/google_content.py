"""Google's rich items translated field by field between the two generations.

Legacy (conversation v2 and Dialogflow's payload.google) RichResponse items and v3 `prompt.content`
describe the same cards with different names (actions-on-google-nodejs src/service/actionssdk/api/v2.ts,
assistant-conversation-nodejs src/api/schema.ts). Only documented fields of the right type are copied,
so whatever a bot writes comes out in the official shape; a field with no counterpart is reported in
`dropped` (its path in the source shape) and left out.
"""

from __future__ import annotations

from typing import Any

from gateway.channels.protocol import JSON

# v2 imageDisplayOptions <-> v3 ImageFill ("DEFAULT" is v2's gray bars).
_FILL_TO_V3 = {"DEFAULT": "GRAY", "WHITE": "WHITE", "CROPPED": "CROPPED"}
_FILL_TO_V2 = {v: k for k, v in _FILL_TO_V3.items()}
_ALIGN = ("LEADING", "CENTER", "TRAILING")
_MEDIA_TYPES = ("AUDIO", "MEDIA_TYPE_UNSPECIFIED")
_RICH_ITEMS = {
    "basicCard": "card",
    "mediaResponse": "media",
    "tableCard": "table",
    "carouselBrowse": "collectionBrowse",
}


def obj(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def items(value: Any) -> list[JSON]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _copy(source: JSON, names: tuple[str, ...], kind: type | tuple[type, ...] = str) -> JSON:
    return {name: source[name] for name in names if isinstance(source.get(name), kind)}


def _url(value: Any) -> str:
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) else ""


def _https(value: Any) -> str:
    """Google plays media only from public HTTPS URLs."""
    return value if isinstance(value, str) and value.startswith("https://") else ""


# --- images and links -----------------------------------------------------------------------------


def image_to_v3(image: Any) -> JSON | None:
    source = obj(image)
    url = _url(source.get("url"))
    if not url:
        return None
    out: JSON = {"url": url, "alt": source.get("accessibilityText", "")}
    if not isinstance(out["alt"], str):
        out["alt"] = ""
    return out | _copy(source, ("height", "width"), int)


def image_to_v2(image: Any) -> JSON | None:
    source = obj(image)
    url = _url(source.get("url"))
    if not url:
        return None
    alt = source.get("alt")
    return {"url": url, "accessibilityText": alt if isinstance(alt, str) else ""} | _copy(
        source, ("height", "width"), int
    )


def link_to_v3(title: Any, action: Any) -> JSON | None:
    """A v3 Link from a legacy button/link-out (title plus openUrlAction)."""
    url = _url(obj(action).get("url"))
    if not url or not isinstance(title, str) or not title:
        return None
    return {"name": title, "open": {"url": url}}


def link_to_v2(link: Any) -> tuple[str, JSON] | None:
    """(title, openUrlAction) from a v3 Link."""
    source = obj(link)
    url = _url(obj(source.get("open")).get("url"))
    name = source.get("name")
    if not url or not isinstance(name, str) or not name:
        return None
    return name, {"url": url}


# --- legacy item -> v3 content ---------------------------------------------------------------------


def to_content(item: JSON, where: str, dropped: list[str]) -> JSON | None:
    """The v3 `content` (one key) for a legacy rich item, or None (its name added to `dropped`)."""
    for key, v3_key in _RICH_ITEMS.items():
        if key in item:
            value = _TO_V3[key](obj(item[key]), f"{where}.{key}", dropped)
            if value is None:
                dropped.append(f"{where}.{key}")
                return None
            return {v3_key: value}
    dropped.append(f"{where}.{next(iter(item), 'item')}")
    return None


def _card_to_v3(card: JSON, where: str, dropped: list[str]) -> JSON | None:
    out = _copy(card, ("title", "subtitle"))
    if isinstance(card.get("formattedText"), str):
        out["text"] = card["formattedText"]
    image = image_to_v3(card.get("image"))
    if image is not None:
        out["image"] = image
    fill = _FILL_TO_V3.get(card.get("imageDisplayOptions", ""))
    if fill:
        out["imageFill"] = fill
    buttons = items(card.get("buttons"))
    if buttons:
        button = link_to_v3(buttons[0].get("title"), buttons[0].get("openUrlAction"))
        if button is not None:
            out["button"] = button
        if len(buttons) > 1 or button is None:
            dropped.append(f"{where}.buttons")
    return out if "text" in out or "image" in out else None


def _media_object_to_v3(source: JSON) -> JSON | None:
    url = _https(source.get("contentUrl"))
    if not url:
        return None
    out = _copy(source, ("name", "description")) | {"url": url}
    image: JSON = {}
    for v2_key, v3_key in (("largeImage", "large"), ("icon", "icon")):
        picture = image_to_v3(source.get(v2_key))
        if picture is not None:
            image[v3_key] = picture
    if image:
        out["image"] = image
    return out


def _media_to_v3(media: JSON, where: str, dropped: list[str]) -> JSON | None:
    objects = [o for o in (_media_object_to_v3(s) for s in items(media.get("mediaObjects"))) if o]
    if not objects:
        return None
    media_type = media.get("mediaType")
    return {"mediaType": media_type if media_type in _MEDIA_TYPES else "AUDIO", "mediaObjects": objects}


def _table_to_v3(table: JSON, where: str, dropped: list[str]) -> JSON | None:
    out = _copy(table, ("title", "subtitle"))
    image = image_to_v3(table.get("image"))
    if image is not None:
        out["image"] = image
    columns = []
    for column in items(table.get("columnProperties")):
        entry = _copy(column, ("header",))
        if column.get("horizontalAlignment") in _ALIGN:
            entry["align"] = column["horizontalAlignment"]
        columns.append(entry)
    if columns:
        out["columns"] = columns
    rows = []
    for row in items(table.get("rows")):
        line: JSON = {"cells": [_copy(cell, ("text",)) for cell in items(row.get("cells"))]}
        if isinstance(row.get("dividerAfter"), bool):
            line["divider"] = row["dividerAfter"]
        rows.append(line)
    if not rows:
        return None
    out["rows"] = rows
    buttons = items(table.get("buttons"))
    if buttons:
        button = link_to_v3(buttons[0].get("title"), buttons[0].get("openUrlAction"))
        if button is not None:
            out["button"] = button
    return out


def _browse_to_v3(browse: JSON, where: str, dropped: list[str]) -> JSON | None:
    tiles = []
    for tile in items(browse.get("items")):
        url = _url(obj(tile.get("openUrlAction")).get("url"))
        if not url or not isinstance(tile.get("title"), str):
            continue
        entry = _copy(tile, ("title", "description", "footer")) | {"openUriAction": {"url": url}}
        image = image_to_v3(tile.get("image"))
        if image is not None:
            entry["image"] = image
        tiles.append(entry)
    if not 2 <= len(tiles) <= 10:
        return None
    out: JSON = {"items": tiles}
    fill = _FILL_TO_V3.get(browse.get("imageDisplayOptions", ""))
    if fill:
        out["imageFill"] = fill
    return out


_TO_V3 = {
    "basicCard": _card_to_v3,
    "mediaResponse": _media_to_v3,
    "tableCard": _table_to_v3,
    "carouselBrowse": _browse_to_v3,
}


# --- v3 content -> legacy item ---------------------------------------------------------------------


def to_item(content: JSON, where: str, dropped: list[str]) -> JSON | None:
    """The legacy rich item for a v3 `content` (its one key), or None (its name added to `dropped`)."""
    for key, value in content.items():
        convert = _TO_V2.get(key)
        item = convert(obj(value), f"{where}.{key}", dropped) if convert else None
        if item is None:
            dropped.append(f"{where}.{key}")
        return item
    return None


def _image_to_card(image: JSON, where: str, dropped: list[str]) -> JSON | None:
    picture = image_to_v2(image)
    return None if picture is None else {"basicCard": {"image": picture, "imageDisplayOptions": "DEFAULT"}}


def _card_to_v2(card: JSON, where: str, dropped: list[str]) -> JSON | None:
    out = _copy(card, ("title", "subtitle"))
    if isinstance(card.get("text"), str):
        out["formattedText"] = card["text"]
    image = image_to_v2(card.get("image"))
    if image is not None:
        out["image"] = image
    fill = _FILL_TO_V2.get(card.get("imageFill", ""))
    if fill:
        out["imageDisplayOptions"] = fill
    button = link_to_v2(card.get("button"))
    if button is not None:
        out["buttons"] = [{"title": button[0], "openUrlAction": button[1]}]
    return {"basicCard": out} if "formattedText" in out or "image" in out else None


def _media_to_v2(media: JSON, where: str, dropped: list[str]) -> JSON | None:
    if media.get("mediaType", "AUDIO") not in _MEDIA_TYPES:  # MEDIA_STATUS_ACK has no legacy form
        return None
    objects = []
    for source in items(media.get("mediaObjects")):
        url = _https(source.get("url"))
        if not url:
            continue
        entry = _copy(source, ("name", "description")) | {"contentUrl": url}
        pictures = obj(source.get("image"))
        for v3_key, v2_key in (("large", "largeImage"), ("icon", "icon")):
            picture = image_to_v2(pictures.get(v3_key))
            if picture is not None:
                entry[v2_key] = picture
        objects.append(entry)
    first = media.get("firstMediaObjectIndex")
    if isinstance(first, int) and 0 < first < len(objects):
        objects = objects[first:]  # legacy playback always starts at the first object
    for name in ("optionalMediaControls", "startOffset"):
        if media.get(name):
            dropped.append(f"{where}.{name}")
    if media.get("repeatMode") == "ALL":
        dropped.append(f"{where}.repeatMode")
    if not objects:
        return None
    return {"mediaResponse": {"mediaType": media.get("mediaType", "AUDIO"), "mediaObjects": objects}}


def _table_to_v2(table: JSON, where: str, dropped: list[str]) -> JSON | None:
    out = _copy(table, ("title", "subtitle"))
    image = image_to_v2(table.get("image"))
    if image is not None:
        out["image"] = image
    columns = []
    for column in items(table.get("columns")):
        entry = _copy(column, ("header",))
        if column.get("align") in _ALIGN:
            entry["horizontalAlignment"] = column["align"]
        columns.append(entry)
    if columns:
        out["columnProperties"] = columns
    rows = []
    for row in items(table.get("rows")):
        line: JSON = {"cells": [_copy(cell, ("text",)) for cell in items(row.get("cells"))]}
        if isinstance(row.get("divider"), bool):
            line["dividerAfter"] = row["divider"]
        rows.append(line)
    if not rows:
        return None
    out["rows"] = rows
    button = link_to_v2(table.get("button"))
    if button is not None:
        out["buttons"] = [{"title": button[0], "openUrlAction": button[1]}]
    return {"tableCard": out}


def _browse_to_v2(browse: JSON, where: str, dropped: list[str]) -> JSON | None:
    tiles = []
    for tile in items(browse.get("items")):
        url = _url(obj(tile.get("openUriAction")).get("url"))
        if not url or not isinstance(tile.get("title"), str):
            continue
        entry = _copy(tile, ("title", "description", "footer")) | {"openUrlAction": {"url": url}}
        image = image_to_v2(tile.get("image"))
        if image is not None:
            entry["image"] = image
        tiles.append(entry)
    if not 2 <= len(tiles) <= 10:
        return None
    out: JSON = {"items": tiles}
    fill = _FILL_TO_V2.get(browse.get("imageFill", ""))
    if fill:
        out["imageDisplayOptions"] = fill
    return {"carouselBrowse": out}


# collection and list select Builder type entries by key: the legacy selects need the entries'
# titles and a systemIntent, which a content object does not carry, so they have no legacy form.
_TO_V2 = {
    "image": _image_to_card,
    "card": _card_to_v2,
    "media": _media_to_v2,
    "table": _table_to_v2,
    "collectionBrowse": _browse_to_v2,
}


def v3_content(content: Any, where: str, dropped: list[str]) -> JSON | None:
    """A bot's v3 `content`, re-read through the legacy form's fields to keep only documented ones.

    collection and list (selects of Builder type entries) pass unchanged: they only exist in v3.
    """
    source = obj(content)
    if not source:
        return None
    key = next(iter(source))
    if len(source) > 1:
        dropped.extend(f"{where}.{extra}" for extra in list(source)[1:])
    if key in ("collection", "list"):
        return {key: source[key]} if isinstance(source[key], dict) else None
    if key == "image":
        image = image_to_v3(image_to_v2(source[key]))
        return None if image is None else {"image": image}
    value = obj(source[key])
    if key == "media":
        if value.get("mediaType") == "MEDIA_STATUS_ACK":  # acknowledges a media status: no objects
            return {"media": {"mediaType": "MEDIA_STATUS_ACK"}}
        value = {k: v for k, v in value.items() if k != "firstMediaObjectIndex"}
    item = to_item({key: value}, where, [])
    if item is None:
        dropped.append(f"{where}.{key}")
        return None
    back = to_content(item, where, [])
    if back is not None and key == "media":
        media = obj(source[key])
        back["media"] |= (
            _copy(media, ("optionalMediaControls",), list)
            | _copy(media, ("startOffset", "repeatMode"), str)
            | _copy(media, ("firstMediaObjectIndex",), int)
        )
    return back

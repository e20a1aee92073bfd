"""Custom actions of the English bot (rasa-sdk 3.6): run in the gateway process or on an action server.

- `validate_booking_form`: the party size must be a number from 1 to 20 (digits or words); otherwise the
  guest hears why and is asked again.
- `action_opening_status`: open or closed right now, from the hours in restaurant.yml (in the restaurant's
  time zone), with the caller's own time added when their time zone differs (Google sends it; the gateway
  passes it as `tracker.latest_message["metadata"]["time_zone"]`).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Text, Tuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

MIN_PEOPLE, MAX_PEOPLE = 1, 20
NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100,
}  # fmt: skip
# restaurant.yml's day names, then how this bot says them.
DAY_KEYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
TODAY, TOMORROW, ON_DAY = "today", "tomorrow", "on {weekday}"

RESTAURANT_FILE = Path(__file__).with_name("restaurant.yml")


def party_size(value: Any) -> Optional[int]:
    """The number a guest said ("4", "four", "fifty"), or None when it is no number."""
    text = str(value or "").strip().lower()
    if text.isdigit():
        return int(text)
    return NUMBER_WORDS.get(text)


class ValidateBookingForm(FormValidationAction):
    def name(self) -> Text:
        return "validate_booking_form"

    def validate_people(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        size = party_size(slot_value)
        if size is None:
            dispatcher.utter_message(response="utter_people_not_a_number", low=MIN_PEOPLE, high=MAX_PEOPLE)
        elif size < MIN_PEOPLE:
            dispatcher.utter_message(response="utter_people_too_few", low=MIN_PEOPLE)
        elif size > MAX_PEOPLE:
            dispatcher.utter_message(response="utter_people_too_many", high=MAX_PEOPLE)
        else:
            return {"people": str(size)}
        return {"people": None}  # the form asks again


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Restaurant:
    """Weekly opening hours in the restaurant's time zone (restaurant.yml)."""

    def __init__(self, path: Path = RESTAURANT_FILE) -> None:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        self.zone = ZoneInfo(data["time_zone"])
        self.hours: Dict[int, Tuple[timedelta, timedelta]] = {}
        for day, span in (data.get("hours") or {}).items():
            opens, closes = (_clock_time(part) for part in span)
            self.hours[DAY_KEYS.index(str(day).lower())] = (opens, closes)

    def status(self, instant: datetime) -> Tuple[bool, datetime]:
        """(open now, when that changes): the closing time when open, else the next opening time."""
        local = instant.astimezone(self.zone)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        for offset in range(8):
            day = midnight + timedelta(days=offset)
            span = self.hours.get(day.weekday())
            if span is None:
                continue
            opens, closes = (_at(day, part, self.zone) for part in span)
            if offset == 0 and opens <= local < closes:
                return True, closes
            if local < opens:
                return False, opens
        raise ValueError(f"{RESTAURANT_FILE} has no opening hours")


def _clock_time(text: str) -> timedelta:
    hours, minutes = str(text).split(":")
    return timedelta(hours=int(hours), minutes=int(minutes))


def _at(day: datetime, since_midnight: timedelta, zone: ZoneInfo) -> datetime:
    naive = day.replace(tzinfo=None) + since_midnight
    return naive.replace(tzinfo=zone)


# Read once per import: the gateway imports the actions again with every new model.
RESTAURANT = Restaurant()


def caller_zone(tracker: Tracker) -> Optional[ZoneInfo]:
    """The caller's time zone from the request metadata, when it names a known zone."""
    metadata = (tracker.latest_message or {}).get("metadata") or {}
    name = metadata.get("time_zone")
    if not isinstance(name, str) or not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


class ActionOpeningStatus(Action):
    """"We are open now until 22:00" / "closed, we open at 12:00", plus the caller's time if it differs."""

    # When "now" is; tests replace it with a fixed instant.
    clock: Callable[[], datetime] = staticmethod(utc_now)

    def name(self) -> Text:
        return "action_opening_status"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[Dict[Text, Any]]:
        # Pure computation on data read at import: async, so it runs on the turn's loop without a thread.
        restaurant = RESTAURANT
        now = self.clock()
        is_open, change = restaurant.status(now)
        local_now = now.astimezone(restaurant.zone)
        if is_open:
            dispatcher.utter_message(response="utter_open_now", closes=change.strftime("%H:%M"))
        else:
            days = (change.date() - local_now.date()).days
            day = {0: TODAY, 1: TOMORROW}.get(days) or ON_DAY.format(weekday=WEEKDAYS[change.weekday()])
            dispatcher.utter_message(response="utter_closed_now", day=day, opens=change.strftime("%H:%M"))
        zone = caller_zone(tracker)
        if zone is not None and now.astimezone(zone).utcoffset() != local_now.utcoffset():
            dispatcher.utter_message(
                response="utter_caller_time",
                restaurant_time=change.strftime("%H:%M"),
                caller_time=change.astimezone(zone).strftime("%H:%M"),
            )
        return []

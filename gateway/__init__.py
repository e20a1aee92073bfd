"""Rasa gateway: one asyncio process serving Google Assistant webhooks with one Rasa agent per language."""

__version__ = "0.1.0"

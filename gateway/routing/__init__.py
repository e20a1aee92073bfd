"""Routing: webhook protocols, locale routing and the HTTP handlers."""

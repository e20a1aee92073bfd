"""Routing: HTTP handlers, locale routing, limits, access log, admin and health routes."""

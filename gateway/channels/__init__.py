"""Channels: one module per request shape (decode a request into a Turn, encode a Reply), and their types."""

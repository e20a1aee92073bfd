"""Rasa event brokers: every stored event is also published, in order, off the request path."""

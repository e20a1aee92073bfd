"""Agents: the per-language pool of Rasa agents, loading, swapping and monitoring them."""

"""Sentinel's node agent: collects GPU and host facts and ships them to the service."""

__version__ = "0.1.0"

"""Kittiwake: a self-hosted SMS gateway wire-compatible with Twilio's 2010-04-01 REST API."""

__version__ = "0.1.0"

"""The routing gateway: an OpenAI-compatible endpoint that embeds, routes and forwards chat requests."""

__version__ = "0.1.0"

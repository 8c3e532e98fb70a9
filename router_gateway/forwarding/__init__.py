"""Sending a request to an expert: the forwarder, its HTTP/1.1 client, SSE relay, LiteLLM provider."""

"""The HTTP surface: handlers, auth and body dependencies, and the one renderer of JSON, errors and SSE."""

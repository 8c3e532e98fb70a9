"""The gateway's one HTTP/1.1 client: forwarding, health checks and engine-metrics scrapes all use it.

``http1`` is the pooled client (injectable connection factory, real TCP/TLS by default), ``errors`` its
one vocabulary of failures, ``get`` the GETs to any URL (health, /metrics), and ``memory`` an in-memory
connection whose server is a function (like httpx's MockTransport), so unit tests run the same parser,
pooling, timeouts, limits and SSE relay as production.
"""

"""Services behind the thin API handlers: routing, forwarding, request log, expert state."""

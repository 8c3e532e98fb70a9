"""What the gateway remembers: expert health, limits and holds, keys, sessions, shared state, the request log."""

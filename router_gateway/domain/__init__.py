"""What every layer speaks: config, the chat protocol, errors and the request record. Imports nothing above it."""

"""The HTTP side of the daemon: server, API routes, status snapshot and page, API tokens."""

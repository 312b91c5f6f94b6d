"""`tradesim serve`: the engine behind an HTTP API, a live WebSocket event stream and a web dashboard.

See docs/serve.md; the security rules are docs/dashboard-security.md.
"""

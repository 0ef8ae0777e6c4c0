"""The gateway's HTTP and WebSocket API, served only to Traefik's edge (ADR-0020).

`routes` is the one table of routes and the scope each needs; `edge` checks tokens for
Traefik's forwardAuth and proves a request came through the edge; `server` serves both on one
TLS listener on 127.0.0.1; `problems` writes every error as RFC 9457 problem details.
"""

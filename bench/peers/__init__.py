"""The peers run of issue 14: Ruby Core beside AppDaemon (and HA's own automation) on one home.

``make bench-peers`` (``python bench/peers``) runs it; ``peers.measure`` holds its figures as
pure functions, tested by ``bench/tests/test_peers_measure.py``.
"""

"""The chaos run of issue 11: promises 1, 2, 10, 11 and 12 of DESIGN.md under ``kill -9``.

``make chaos`` (``python bench/chaos``) runs it; ``chaos.analysis`` holds its verdicts as pure
functions, tested by ``bench/tests/test_chaos_analysis.py``.
"""

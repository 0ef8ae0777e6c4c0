"""`profiling.summary`: py-spy's collapsed stacks summed by hop and by function."""

from __future__ import annotations

from pathlib import Path

from profiling import summary

MAIN = "<module> (ruby_gateway/main.py:10)"
HANDLE = f"{MAIN};handle (ruby_gateway/bridge.py:80)"
RAW = "\n".join(
    [
        f"{MAIN};run (asyncio/base_events.py:600);select (selectors.py:468) 50",
        f"{HANDLE};encode (ruby_schemas/registry.py:40);model_dump_json (pydantic/main.py:587) 30",
        f"{HANDLE};publish (ruby_natsx/publish.py:100);_send (nats/aio/client.py:1014) 15",
        f"{HANDLE} 5",
        "a line that is not a stack",
    ]
)


def test_each_sample_counts_for_its_innermost_known_hop_and_its_own_function(
    tmp_path: Path,
) -> None:
    raw = tmp_path / "gateway.txt"
    raw.write_text(RAW, encoding="utf-8")
    found = summary(raw, top=2)
    assert found.samples == 100
    assert dict(found.by_hop) == {
        "asyncio event loop": 50,
        "pydantic validation and dumps": 30,  # inside an envelope's encode: pydantic's
        "NATS client (nats-py)": 15,
        "Ruby Core: the service": 5,
    }
    assert found.top == [("select (selectors.py:468)", 50),
                         ("model_dump_json (pydantic/main.py:587)", 30)]  # fmt: skip

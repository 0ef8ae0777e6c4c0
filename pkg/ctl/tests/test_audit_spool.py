"""Bootstrap's changes are audited: spooled while NATS may not run, published once it does."""

from __future__ import annotations

from ruby_ctl.audit_spool import flush, spool_path
from ruby_ctl.bootstrap import bootstrap
from ruby_ctl.testing import Installation
from ruby_natsx.topology import AUDIT
from ruby_schemas.audit import AuditRecordV1
from ruby_schemas.registry import decode


async def test_bootstrap_changes_are_spooled_then_published_once(
    secure_installation: Installation,
) -> None:
    installation = secure_installation
    spool = spool_path(installation.state.root)
    lines = spool.read_text().splitlines()
    assert len(lines) == len(installation.bootstrapped.changes) > 0
    operator = await installation.connect("operator")
    try:
        assert await flush(operator, installation.state.root) == len(lines)
        assert not spool.exists()
        assert await flush(operator, installation.state.root) == 0
        js = operator.jetstream()
        stream = installation.topology.stream(AUDIT).name
        subject = installation.subjects.audit("operator", "bootstrap_changed")
        info = await js.stream_info(stream, subjects_filter=subject)
        assert info.state.messages == len(lines)
        last = decode((await js.get_last_msg(stream, subject)).data or b"").data
        assert isinstance(last, AuditRecordV1)
        assert last.actor == "service:operator"
        assert last.reason == installation.bootstrapped.changes[-1]
    finally:
        await operator.drain()
    again = bootstrap(installation.bao.root_client(), installation.state, installation.prefix)
    assert again.changes == ()
    assert not spool.exists()  # nothing changed: nothing to audit

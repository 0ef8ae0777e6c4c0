"""Home Assistant's automation syntax, read into Ruby Core's own rules (ADR-0006).

`is_ha_document` says whether a parsed rule file is in HA's format; `load_document` loads its
automations as rules (`ruby_rules.model.Rule`), with errors located in the HA text; `is_ha_rule`
and `load_automation` do the same for one rule of a native ``rules:`` list. Everything HA
has and Ruby Core cannot run yet is refused by name (`ruby_rules.ha.features` lists it all).
"""

from ruby_rules.ha.automation import is_ha_rule
from ruby_rules.ha.load import fallback_id, is_ha_document, load_automation, load_document
from ruby_rules.ha.source import NOT_YET

__all__ = [
    "NOT_YET",
    "fallback_id",
    "is_ha_document",
    "is_ha_rule",
    "load_automation",
    "load_document",
]

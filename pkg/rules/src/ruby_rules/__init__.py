"""Rule files: the format, the loader and its located errors."""

from ruby_rules.errors import LoadError
from ruby_rules.loader import LoadResult, load_dir, load_file, load_text
from ruby_rules.model import Rule, RuleConfig

__all__ = ["LoadError", "LoadResult", "Rule", "RuleConfig", "load_dir", "load_file", "load_text"]

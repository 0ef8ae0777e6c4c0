"""Rule files: the format, the loader and its located errors."""

from ruby_engine.rules.errors import LoadError
from ruby_engine.rules.loader import LoadResult, load_dir, load_file, load_text
from ruby_engine.rules.model import Rule, RuleConfig

__all__ = ["LoadError", "LoadResult", "Rule", "RuleConfig", "load_dir", "load_file", "load_text"]

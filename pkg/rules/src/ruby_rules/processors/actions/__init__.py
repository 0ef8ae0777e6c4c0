"""Action kinds: what a rule does."""

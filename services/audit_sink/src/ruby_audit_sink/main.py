"""Entry point of the audit_sink service."""

import sys


def main() -> int:
    """Say plainly that this service does not run yet, and exit non-zero."""
    print("ruby-audit-sink: not yet implemented (see the open issues)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

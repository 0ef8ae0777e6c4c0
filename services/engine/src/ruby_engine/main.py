"""Entry point of the engine service."""

import sys


def main() -> int:
    """Say plainly that this service does not run yet, and exit non-zero."""
    print("ruby-engine: not yet implemented (see the open issues)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

"""trainer (see docs/design.md)."""

"""inference (see docs/design.md)."""

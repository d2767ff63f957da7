"""trainer (see DESIGN.md)."""

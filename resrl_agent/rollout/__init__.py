"""rollout (see DESIGN.md)."""

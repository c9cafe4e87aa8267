"""maskset's dataset core: one dataset = one folder (see DESIGN.md)."""

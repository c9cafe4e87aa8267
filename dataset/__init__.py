"""maskset's dataset core: one dataset = one folder (docs/design.md is the map)."""

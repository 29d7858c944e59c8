"""Store, embedded default data, validation and importers (DESIGN.md §1)."""

"""Store, embedded default data, validation and importers (docs/design.md §1)."""

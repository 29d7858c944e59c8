"""The trading journal: every decision remembered with what was known, outcomes filled in
later, and the journal turned back into training data (`synthpm.journal.records` has the
table's contract)."""

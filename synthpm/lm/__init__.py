"""The language model (docs/design.md §6): tokenizer → model → train → decode → evaluate."""

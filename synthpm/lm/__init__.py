"""The language model (DESIGN §6): tokenizer → model → train → decode → evaluate."""

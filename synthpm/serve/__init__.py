"""The HTTP service: the model behind a micro-batcher, the JSON API and the dashboard."""

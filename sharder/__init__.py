"""The master process: supervisor, router, identify gate, state store, REST gate, CLI."""

"""The online scoring service: its HTTP contract, app, client and in-process runner."""

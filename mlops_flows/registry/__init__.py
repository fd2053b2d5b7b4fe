"""The governed registry: versions and aliases, governance rules, the signed audit history,
the registry lock, reproduction of a version."""

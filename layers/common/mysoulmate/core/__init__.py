"""Core: settings, errors, request context, the principal and the blocking-call helper.

Imports nothing else of the package; every layer may import it."""

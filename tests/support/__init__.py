"""Test helpers shared by the suites: builders and in-memory stand-ins for ports."""

"""Internationalization: catalogs, `t()`, locale negotiation and CLDR formatting (Babel)."""

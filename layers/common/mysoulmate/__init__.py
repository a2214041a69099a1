"""MySoulmate platform services: one package, the shared Lambda layer, in layers that import
one way: runtime → api and the adapters (storage, queue) → the domains (analytics, i18n,
alerts) → observability → core. README.md (Layout) says what lives where."""

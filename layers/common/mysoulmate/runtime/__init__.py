"""Composition root and entry points: adapters built from settings (`backends`), the uvicorn
server, the local worker, the Lambda handlers and init, the migrate custom resource, the
alerts handler and the `mysoulmate` CLI."""

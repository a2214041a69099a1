"""HTTP layer: app factory, middleware, authentication, error handlers and one router per
endpoint group (analytics, health, i18n, metrics). Thin: validate, call one domain function,
return a model."""

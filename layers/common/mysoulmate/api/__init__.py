"""HTTP routers, one per endpoint group; thin: validate, call one domain function, return."""

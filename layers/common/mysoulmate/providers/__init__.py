"""Forwarding stored events to analytics providers (Mixpanel, GA4), isolated from storage."""

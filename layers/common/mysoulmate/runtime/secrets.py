"""Secrets a function needs, from the environment or from SSM Parameter Store.

On a laptop or in a container a secret is an environment variable (a Kubernetes Secret
mounted as one). On AWS the template holds only the NAME of an SSM SecureString parameter
(`<NAME>_PARAMETER`), read here at first use, decrypted, and cached by Powertools, so a
rotated value is picked up within `CACHE_SECONDS`. Error messages never hold a value.
"""

from __future__ import annotations

CACHE_SECONDS = 300


class SecretUnavailableError(RuntimeError):
    """A secret is configured (its parameter named) but could not be read."""


def secret(value: str, parameter: str) -> str:
    """``value`` when set, else the SSM parameter ``parameter`` names, else ""."""
    if value or not parameter:
        return value
    from aws_lambda_powertools.utilities import parameters

    try:
        read = parameters.get_parameter(parameter, decrypt=True, max_age=CACHE_SECONDS)
    except Exception as exc:  # noqa: BLE001 - any SSM/KMS/network failure means the same here
        # Powertools' and botocore's messages name the parameter and the error code only.
        raise SecretUnavailableError(f"reading SSM parameter {parameter} failed: {exc}") from None
    if not isinstance(read, str) or not read.strip():
        raise SecretUnavailableError(f"SSM parameter {parameter} is empty")
    return read.strip()

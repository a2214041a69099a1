"""Lambda entry point for the CloudFormation custom resource that migrates Aurora
(the logic: `mysoulmate.runtime.migrate_resource`)."""

from mysoulmate.runtime.migrate_resource import handler

__all__ = ["handler"]

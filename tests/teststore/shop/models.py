"""The test store's own table: results of idempotent requests, so a key applies once."""

from typing import ClassVar

from django.db import models


class IdempotentRequest(models.Model):
    """One accepted request per (scope, key); a retry gets `status_code` and `response` back.

    `fingerprint` is a hash of the request's input: the same key with a different input
    is refused (422) rather than silently answered with the other request's result.
    """

    scope = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response = models.JSONField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["scope", "key"], name="shop_idempotent_scope_key")
        ]

    def __str__(self) -> str:
        return f"{self.scope}:{self.key}"

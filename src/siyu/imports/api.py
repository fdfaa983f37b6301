"""File imports over HTTP (filled in by the imports work)."""

from ninja import Router

router = Router(tags=["imports"])

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "siyu.accounts"
    label = "accounts"

    def ready(self) -> None:
        from siyu.accounts.roles import ensure_roles

        post_migrate.connect(lambda **kw: ensure_roles(), dispatch_uid="siyu-roles", weak=False)

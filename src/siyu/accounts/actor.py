"""Who is acting: every state change and every view of personal data names one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Actor:
    user: Any | None
    label: str
    can_see_pii: bool = False
    can_export_pii: bool = False

    @classmethod
    def for_user(cls, user: Any) -> Actor:
        if getattr(user, "is_local_cli", False):  # a `siyu` command asking the server (accounts.local)
            return cls(user=None, label=user.label, can_see_pii=True, can_export_pii=True)
        return cls(
            user=user,
            label=user.get_username(),
            can_see_pii=user.has_perm("privacy.view_personal_data"),
            can_export_pii=user.has_perm("privacy.export_personal_data"),
        )

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        """Internal work (ingestion, demo); it sees nothing on anyone's screen."""
        return cls(user=None, label=label, can_see_pii=True, can_export_pii=True)


def cli_actor() -> Actor:
    """The operating-system user running the CLI: it has shell access to the data anyway."""
    import getpass

    return Actor(user=None, label=f"cli:{getpass.getuser()}", can_see_pii=True, can_export_pii=True)

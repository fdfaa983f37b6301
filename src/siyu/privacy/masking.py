"""Masking (脱敏) of personal data for people whose role may not see it."""

from __future__ import annotations


def mask_phone(value: str) -> str:
    """+8613812345678 -> +86138****5678; keeps the prefix and the last four digits."""
    if len(value) <= 7:
        return "*" * len(value)
    return value[:-8] + "****" + value[-4:] if len(value) > 8 else value[:3] + "****"


def mask_email(value: str) -> str:
    local, _, domain = value.partition("@")
    head = local[:1] if len(local) <= 2 else local[:2]
    return f"{head}***@{domain}" if domain else head + "***"


def mask_name(value: str) -> str:
    """张三丰 -> 张**, Alice Smith -> A**********, 张 -> * (a lone character is the whole name)."""
    if len(value) <= 1:
        return "*" * len(value)
    return value[:1] + "*" * (len(value) - 1)


def mask_id(value: str) -> str:
    """Opaque ids such as WeChat openids: keep a short prefix and suffix."""
    if len(value) <= 8:
        return value[:2] + "***"
    return value[:4] + "***" + value[-3:]


MASKERS = {
    "phone": mask_phone,
    "email": mask_email,
    "name": mask_name,
}


def mask(kind: str, value: str | None) -> str | None:
    if value is None or value == "":
        return value
    return MASKERS.get(kind, mask_id)(value)

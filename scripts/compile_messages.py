"""Compile the translation catalogues (src/siyu/locale/*/LC_MESSAGES/django.po) to .mo files.

The compiled .mo files are committed, so neither the server nor CI needs GNU
gettext. Extracting new strings still uses Django's ``makemessages`` (which
needs xgettext); see docs/console.md.

    .venv/bin/python scripts/compile_messages.py           # write the .mo files
    .venv/bin/python scripts/compile_messages.py --check   # fail if one is stale or incomplete
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import polib

LOCALE = Path(__file__).resolve().parents[1] / "src" / "siyu" / "locale"


def problems(po: polib.POFile) -> list[str]:
    out = [f"untranslated: {e.msgid!r}" for e in po.untranslated_entries()]
    out += [f"fuzzy: {e.msgid!r}" for e in po.fuzzy_entries()]
    return out


def compiled(po: polib.POFile) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "django.mo"
        po.save_as_mofile(str(target))
        return target.read_bytes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale .mo files and untranslated strings")
    args = parser.parse_args(argv)
    failed = False
    for po_path in sorted(LOCALE.glob("*/LC_MESSAGES/django.po")):
        po = polib.pofile(str(po_path))
        mo_path = po_path.with_suffix(".mo")
        issues = problems(po)
        data = compiled(po)
        if args.check:
            if not mo_path.exists() or mo_path.read_bytes() != data:
                issues.append(f"{mo_path} is stale: run scripts/compile_messages.py")
        else:
            mo_path.write_bytes(data)
            print(f"wrote {mo_path.relative_to(LOCALE.parents[2])} ({len(po.translated_entries())} messages)")
        for issue in issues:
            print(f"{po_path.parent.parent.name}: {issue}", file=sys.stderr)
        failed = failed or bool(issues)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Docs that cannot rot: every command, setting, API endpoint, protocol type and id kind is documented.

In the manner of Datasette's ``tests/test_docs.py``: the lists come from the code
(the argparse parser, settings.py and conf.py, the OpenAPI schema, the protocol
modules), so adding one without writing its documentation fails here, naming it.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def doc(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


# -- the CLI ---------------------------------------------------------------------------------
def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(command words, parser) for every runnable subcommand, depth first."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers and prefix:
        yield prefix, parser
    for action in subparsers:
        for name, sub in action.choices.items():
            yield from _commands(sub, (*prefix, name))


def _cli_commands() -> list[tuple[str, list[str]]]:
    from siyu.cli import build_parser

    out = []
    for words, parser in _commands(build_parser()):
        options = sorted({opt for a in parser._actions for opt in a.option_strings if opt.startswith("--")} - {"--help"})
        out.append((" ".join(words), options))
    return out


def _section(text: str, heading: str) -> str:
    """The markdown section whose heading contains ``heading``, up to the next heading of its level or above."""
    match = re.search(rf"^(#+) [^\n]*{re.escape(heading)}[^\n]*\n", text, re.M)
    if not match:
        return ""
    level = len(match.group(1))
    rest = text[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


@pytest.mark.parametrize(("command", "options"), _cli_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_cli_command_and_option_is_documented(command, options):
    section = _section(doc("cli.md"), f"`siyu {command}`")
    assert section, f"docs/cli.md has no heading for `siyu {command}`"
    missing = [opt for opt in options if opt not in section]
    assert not missing, f"docs/cli.md, `siyu {command}`: options not documented: {missing}"


# -- settings --------------------------------------------------------------------------------
def _settings() -> list[str]:
    names = set()
    for module in ("settings.py", "conf.py"):
        names |= set(re.findall(r"\b(SIYU_[A-Z0-9_]+)\b", (ROOT / "src" / "siyu" / module).read_text()))
    return sorted(names | {"DATABASE_URL"})


@pytest.mark.parametrize("name", _settings())
def test_every_setting_is_documented(name):
    assert re.search(rf"^#+ `{name}`", doc("settings.md"), re.M), f"docs/settings.md has no heading for `{name}`"


# -- the REST API ----------------------------------------------------------------------------
def _operations() -> list[str]:
    from siyu.api import api

    schema = api.get_openapi_schema()
    return sorted(f"{method.upper()} {path}" for path, item in schema["paths"].items() for method in item)


@pytest.mark.parametrize("operation", _operations())
def test_every_api_endpoint_is_documented(operation):
    assert re.search(rf"^#+ `{re.escape(operation)}`", doc("api.md"), re.M), (
        f"docs/api.md has no heading for `{operation}`")


def test_every_api_permission_check_names_a_documented_permission():
    api_md = doc("api.md")
    sources = (ROOT / "src" / "siyu").rglob("api.py")
    perms = {p for f in sources for p in re.findall(r'require\(request, "([\w.]+)"\)', f.read_text())}
    assert perms
    missing = sorted(p for p in perms if f"`{p}`" not in api_md)
    assert not missing, f"docs/api.md does not mention the permissions {missing}"


# -- ingestion protocols and identities ---------------------------------------------------
def test_every_segment_endpoint_and_sensors_record_type_is_documented():
    from siyu.ingest import segment, sensors

    text = doc("ingestion.md")
    missing = [f"/v1/{t}" for t in (*segment.TYPES, "batch") if f"`POST /v1/{t}`" not in text]
    missing += [t for t in sensors.TYPES if f"`{t}`" not in text]
    assert not missing, f"docs/ingestion.md does not document {missing}"


def test_every_sensors_identity_key_and_segment_id_trait_is_documented():
    from siyu.ingest import segment, sensors

    text = doc("ingestion.md")
    missing = [k for k in sensors.IDENTITY_KINDS if f"`{k}`" not in text]
    missing += [k for k in segment.TRAIT_IDS if f"`{k}`" not in text]
    assert not missing, f"docs/ingestion.md does not document {missing}"


def test_every_identity_kind_is_documented_as_strong_or_weak():
    from siyu.customers.models import STRONG_KINDS, IdentityKind

    text = doc("identity.md")
    for kind in IdentityKind.values:
        strength = "strong" if kind in STRONG_KINDS else "weak"
        assert re.search(rf"^\| `{kind}` \| {strength} \|", text, re.M), (
            f"docs/identity.md needs a table row starting | `{kind}` | {strength} |")


def test_every_role_is_documented_with_its_permissions():
    from siyu.accounts.roles import ROLES

    text = doc("api.md")
    for role, spec in ROLES.items():
        row = re.search(rf"^\| `{role}` \|([^\n]*)$", text, re.M)
        assert row, f"docs/api.md has no roles-table row for `{role}`"
        missing = [p for p in spec["perms"] if p != "*" and f"`{p}`" not in row.group(1)]
        assert not missing, f"docs/api.md, role `{role}`: permissions not listed: {missing}"


@pytest.mark.parametrize("name", ["ingestion.md", "api.md", "cli.md", "settings.md", "identity.md"])
def test_relative_links_between_docs_resolve(name):
    for target in re.findall(r"\]\((?!https?:|#)([^)#]+)", doc(name)):
        assert (DOCS / target).resolve().exists(), f"docs/{name} links to a missing file: {target}"

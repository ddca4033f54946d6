"""English translations. Message ids are the Simplified Chinese UI strings; English
lives in ``webapp/translations/en/*.yaml`` (one file per area, ``中文: English``) and is
compiled to ``messages.mo`` by ``flask i18n compile`` (``make setup`` runs it)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import yaml
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo

TRANSLATIONS = Path(__file__).parent / "translations"
SOURCES = TRANSLATIONS / "en"
MO_FILE = SOURCES / "LC_MESSAGES" / "messages.mo"
CATALOG_DATE = datetime(2026, 1, 1, tzinfo=UTC)
# _('...') / _("...") / gettext('...') / lazy_gettext('...') with a literal first argument.
CJK = re.compile(r"[\u4e00-\u9fff]")
MSGID = re.compile(r"""(?:\b_l?|\bgettext|\blazy_gettext|\bngettext)\(\s*(['"])(.+?)(?<!\\)\1""")


def english_mapping() -> dict[str, str]:
    mapping: dict[str, str] = {}
    for path in sorted(SOURCES.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for zh, en in data.items():
            mapping[str(zh)] = str(en)
    return mapping


def compile_catalog() -> int:
    # Fixed header dates: Babel stamps "now" into the catalog's header otherwise, so every
    # `make setup` would write a different file and leave the checkout modified.
    catalog = Catalog(
        locale="en", domain="messages", creation_date=CATALOG_DATE, revision_date=CATALOG_DATE
    )
    mapping = english_mapping()
    for zh, en in mapping.items():
        catalog.add(zh, en)
    MO_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(MO_FILE, "wb") as fh:
        write_mo(fh, catalog)
    return len(mapping)


def used_msgids(root: Path | None = None) -> set[str]:
    """Every literal message id in templates and Python code of the web app and forms."""
    root = root or Path(__file__).resolve().parent.parent
    ids: set[str] = set()
    for pattern in ("webapp/**/*.html", "webapp/**/*.py", "forms/**/*.py"):
        for path in root.glob(pattern):
            for match in MSGID.finditer(path.read_text(encoding="utf-8")):
                if CJK.search(match.group(2)):  # message ids are the Chinese UI strings
                    ids.add(match.group(2))
    return ids

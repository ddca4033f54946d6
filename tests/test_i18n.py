"""Every UI string has an English translation, and English pages use it."""

from webapp.i18n import compile_catalog, english_mapping, used_msgids


def test_every_message_has_english():
    missing = sorted(used_msgids() - set(english_mapping()))
    assert missing == [], f"add to webapp/translations/en/*.yaml: {missing[:20]}"


def test_english_catalog_is_used(client):
    compile_catalog()
    page = client.get("/?lang=en").get_data(as_text=True)
    assert "Programs" in page and "政策一览" not in page
    page = client.get("/?lang=zh").get_data(as_text=True)
    assert "政策一览" in page


def test_compiled_catalog_does_not_depend_on_when_it_was_compiled():
    """The header carries fixed dates, so `make setup` rewrites the committed file with the
    same bytes instead of leaving the checkout modified."""
    from babel.messages.mofile import read_mo

    from webapp.i18n import CATALOG_DATE, MO_FILE

    compile_catalog()
    first = MO_FILE.read_bytes()
    compile_catalog()
    assert MO_FILE.read_bytes() == first
    with MO_FILE.open("rb") as fh:
        header = read_mo(fh).mime_headers
    assert ("POT-Creation-Date", CATALOG_DATE.strftime("%Y-%m-%d %H:%M+0000")) in header

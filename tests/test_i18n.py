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

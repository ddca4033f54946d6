"""The districts (区县 and development zones) an organization can register in.

This is configuration kept as data: the value stored in ``Organization.district`` and in
district-limited role grants is the Chinese name, so a district officer's grant
``district="朝阳区"`` covers the organizations registered with that value. To serve
another city, or when Changchun's administrative map changes, either edit ``CHANGCHUN``
below or set ``app.config["DISTRICTS"]`` to a list of ``(chinese_name, english_name)``
pairs. Renaming an entry that is already in use needs a data migration of
``organizations.district`` and ``role_grants.district`` as well.
"""

from __future__ import annotations

from flask import current_app, has_app_context

CHANGCHUN: tuple[tuple[str, str], ...] = (
    ("南关区", "Nanguan District"),
    ("宽城区", "Kuancheng District"),
    ("朝阳区", "Chaoyang District"),
    ("二道区", "Erdao District"),
    ("绿园区", "Lüyuan District"),
    ("双阳区", "Shuangyang District"),
    ("九台区", "Jiutai District"),
    ("农安县", "Nong'an County"),
    ("榆树市", "Yushu City"),
    ("德惠市", "Dehui City"),
    ("公主岭市", "Gongzhuling City"),
    ("长春新区", "Changchun New Area"),
    ("高新区", "High-tech Industrial Development Zone"),
    ("经开区", "Economic and Technological Development Zone"),
    ("汽开区", "Automobile Economic and Technological Development Zone"),
    ("净月区", "Jingyue High-tech Industrial Development Zone"),
)


def districts() -> tuple[tuple[str, str], ...]:
    """The configured districts as ``(chinese_name, english_name)`` pairs."""
    if has_app_context():
        configured = current_app.config.get("DISTRICTS")
        if configured:
            return tuple((str(zh), str(en)) for zh, en in configured)
    return CHANGCHUN


def district_choices(lang: str) -> list[tuple[str, str]]:
    """Choices for a select field: the stored value is always the Chinese name."""
    return [(zh, en if lang == "en" else zh) for zh, en in districts()]


def district_label(value: str, lang: str) -> str:
    """Display name of a stored district value (unknown values are shown as stored)."""
    if lang == "en":
        for zh, en in districts():
            if zh == value:
                return en
    return value

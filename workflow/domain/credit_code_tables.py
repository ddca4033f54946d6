"""Code tables for the 统一社会信用代码 (unified social credit code), kept as data.

Source: programs.md §6.3 [FACT C3 — consistent across several independent public
implementations]. The GB 32100-2015 base table had only departments 1/5/9/Y; the others
were added later [UNVERIFIED]. One public library (fdstar/NumberValidators) carries a
different, apparently obsolete table, which is why this lives here as data and not as
branches in code: when the table changes, edit this mapping only.

Structure: ``REGISTRATION_DEPARTMENTS[first_char] = {"name": ..., "categories": {...}}``
where ``categories`` maps the second character (机构类别代码) to its label.
"""

from __future__ import annotations

from typing import Final, TypedDict


class RegistrationDepartment(TypedDict):
    """One row of the registration-department table (position 1 of the code)."""

    name: str
    categories: dict[str, str]


REGISTRATION_DEPARTMENTS: Final[dict[str, RegistrationDepartment]] = {
    "1": {
        "name": "机构编制",
        "categories": {
            "1": "机关",
            "2": "事业单位",
            "3": "中央编办直接管理机构编制的群众团体",
            "9": "其他",
        },
    },
    "2": {
        "name": "外交",
        "categories": {"1": "外国常驻新闻机构", "9": "其他"},
    },
    "3": {
        "name": "司法行政",
        "categories": {
            "1": "律师执业机构",
            "2": "公证处",
            "3": "基层法律服务所",
            "4": "司法鉴定机构",
            "5": "仲裁委员会",
            "9": "其他",
        },
    },
    "4": {
        "name": "文化",
        "categories": {"1": "外国在华文化中心", "9": "其他"},
    },
    "5": {
        "name": "民政",
        "categories": {"1": "社会团体", "2": "民办非企业单位", "3": "基金会", "9": "其他"},
    },
    "6": {
        "name": "旅游",
        "categories": {
            "1": "外国旅游部门常驻代表机构",
            "2": "港澳台地区旅游部门常驻内地（大陆）代表机构",
            "9": "其他",
        },
    },
    "7": {
        "name": "宗教",
        "categories": {"1": "宗教活动场所", "2": "宗教院校", "9": "其他"},
    },
    "8": {
        "name": "工会",
        "categories": {"1": "基层工会", "9": "其他"},
    },
    "9": {
        # Registered by 工商, which is now 市场监管 (market regulation).
        "name": "工商（现市场监管）",
        "categories": {"1": "企业", "2": "个体工商户", "3": "农民专业合作社"},
    },
    "A": {
        "name": "中央军委改革和编制办公室",
        "categories": {"1": "军队事业单位", "9": "其他"},
    },
    "N": {
        "name": "农业",
        "categories": {
            "1": "组级集体经济组织",
            "2": "村级集体经济组织",
            "3": "乡镇级集体经济组织",
            "9": "其他",
        },
    },
    "Y": {
        # programs.md lists only the category code "1" for department Y (其他); the label
        # mirrors the department name.
        "name": "其他",
        "categories": {"1": "其他"},
    },
}
"""Registration department (position 1) → name and 机构类别 (position 2) labels."""

"""What the generated data looks like: districts, organization names, the state mix per
call phase, and realistic JSON taken from the real engine.

The JSON an application carries (form, frozen snapshot, eligibility results with their
traces, award trace) is not invented: :func:`program_templates` runs one scenario per
program from ``tests/scenarios`` through the real engine on an in-memory SQLite
database and keeps what the engine wrote, then varies the free-text fields so rows are
not all identical. Forms therefore pass the programs' own validation, so generated
drafts can really be submitted and generated reviews can really be passed.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import ROOT

# Changchun's districts, development zones and county-level cities, weighted roughly by
# how many firms they register (the urban districts and the zones dominate).
DISTRICTS: list[tuple[str, int]] = [
    ("朝阳区", 14),
    ("南关区", 12),
    ("宽城区", 8),
    ("二道区", 8),
    ("绿园区", 9),
    ("长春新区", 12),
    ("经开区", 9),
    ("净月区", 7),
    ("汽开区", 7),
    ("双阳区", 3),
    ("九台区", 3),
    ("榆树市", 2),
    ("德惠市", 2),
    ("公主岭市", 2),
    ("农安县", 2),
]
ORG_TYPES: list[tuple[str, int]] = [
    ("enterprise", 82),
    ("patent_agency", 12),
    ("university", 3),
    ("research_institute", 3),
]
# Share of all applications per program (certification rewards are the mass program,
# branded agencies the smallest).
PROGRAM_WEIGHTS: dict[str, int] = {
    "certification_reward": 40,
    "pledge_loan_subsidy": 30,
    "patent_dense_product": 22,
    "branded_agency": 8,
}
SCENARIOS: dict[str, str] = {
    "certification_reward": "certification_reward/approved.yaml",
    "pledge_loan_subsidy": "pledge_loan_subsidy/approved_pure_pledge.yaml",
    "branded_agency": "branded_agency/seven_apps_top_five.yaml",
    "patent_dense_product": "patent_dense_product/n_approved_partial.yaml",
}
EXPERT_PROGRAMS = {"branded_agency", "patent_dense_product"}

# State mix per call phase, in percent. "historical" calls are closed and decided,
# "review" is last round (closed for submissions, under review), "open" accepts
# applications now.
STATE_MIX: dict[str, dict[str, float]] = {
    "historical": {
        "paid": 58,
        "rejected": 22,
        "withdrawn": 5,
        "clawed_back": 0.5,
        "approved": 2.5,
        "draft": 12,
    },
    "review": {
        "draft": 10,
        "district_review": 8,
        "district_supplement": 3,
        "city_review": 20,
        "city_supplement": 4,
        "expert_review": 10,
        "ranking": 2,
        "approval": 15,
        "public_notice": 8,
        "objection_review": 0.5,
        "approved": 10,
        "rejected": 8.5,
        "withdrawn": 1,
    },
    "open": {
        "draft": 45,
        "district_review": 20,
        "district_supplement": 4,
        "city_review": 18,
        "city_supplement": 3,
        "approval": 3,
        "rejected": 5,
        "withdrawn": 2,
    },
}
# Programs without expert review put those applications in the neighbouring stages.
NO_EXPERT_STATE = {"expert_review": "city_review", "ranking": "approval"}
# States that hold reserved budget, and those that have a decision letter.
RESERVED_STATES = {"public_notice", "objection_review", "approved", "paid", "clawed_back"}
DECIDED_STATES = {"approved", "paid", "clawed_back"}

SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰红宇鑫浩然晨轩博文雪梅立新晓"
NAME_HEADS = [
    "长春",
    "吉林",
    "长光",
    "一汽",
    "北方",
    "东北",
    "净月",
    "南湖",
    "中吉",
    "华鼎",
    "长白",
    "松花",
    "吉大",
    "锦程",
    "宏达",
    "盛源",
    "恒信",
    "瑞丰",
    "鼎新",
    "博远",
]
NAME_MIDS = [
    "光电",
    "精密",
    "汽车电子",
    "生物医药",
    "新材料",
    "智能装备",
    "农业科技",
    "化工",
    "软件",
    "轨道交通",
    "信息技术",
    "医疗器械",
    "环保科技",
    "食品",
    "机械制造",
    "数控",
    "新能源",
    "电气",
    "检测",
    "航空",
]
NAME_TAILS = {
    "enterprise": ["有限公司", "股份有限公司", "科技有限公司", "集团有限公司"],
    "patent_agency": ["专利代理有限公司", "知识产权代理有限公司", "专利事务所（普通合伙）"],
    "university": ["大学", "职业技术学院", "理工学院"],
    "research_institute": ["研究所", "研究院", "技术研究中心"],
}
BANKS = [
    "中国工商银行",
    "中国建设银行",
    "中国银行",
    "中国农业银行",
    "吉林银行",
    "长春农商银行",
    "交通银行",
]


def weighted(rng: random.Random, pairs: list[tuple[str, float]]) -> str:
    total = sum(w for _, w in pairs)
    x = rng.random() * total
    for value, w in pairs:
        x -= w
        if x < 0:
            return value
    return pairs[-1][0]


def person_name(rng: random.Random) -> str:
    return (
        rng.choice(SURNAMES) + rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.6 else "")
    )


def org_name(rng: random.Random, org_type: str, n: int) -> str:
    tail = rng.choice(NAME_TAILS[org_type])
    if org_type in ("university", "research_institute"):
        return f"{rng.choice(NAME_HEADS)}{rng.choice(NAME_MIDS)}{tail}{n}"
    return f"{rng.choice(NAME_HEADS)}{rng.choice(NAME_MIDS)}{n}{tail}"


def credit_code(n: int) -> str:
    """A valid unified social credit code for organization ``n`` (same scheme as the
    test factory in tests/conftest.py: body from n, GB 32100 check digit computed)."""
    chars = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    body = f"91220101{n:09d}"[:17]
    weights = [pow(3, i, 31) for i in range(17)]
    total = sum(chars.index(c) * w for c, w in zip(body, weights, strict=True))
    return body + chars[(31 - total % 31) % 31]


# ---------------------------------------------------------------- engine-made JSON


@dataclass
class Variant:
    key: int  # unique across programs: the bench_json template row on PostgreSQL
    form: str  # JSON text, ready for COPY
    draft_form: str  # what an abandoned draft holds (the first half of the form)
    snapshot: str


@dataclass
class ProgramTemplate:
    code: str
    number_prefix: str
    materials: list[str]
    eligibility: str
    award_trace: str
    award_fen: int
    variants: list[Variant] = field(default_factory=list)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _vary(form: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Change the free-text fields only: rules and awards stay what the engine computed."""
    out = copy.deepcopy(form)
    for key in ("contact_name", "principal_name"):
        if key in out:
            out[key] = person_name(rng)
    if "contact_phone" in out:
        out["contact_phone"] = f"139{rng.randrange(10**8):08d}"
    if "public_service" in out:
        out["public_service"] = out["public_service"] + "（" + person_name(rng) + "负责）"
    return out


_TEMPLATES: dict[tuple[int, int], dict[str, ProgramTemplate]] = {}


def program_templates(seed: int = 7, variants: int = 48) -> dict[str, ProgramTemplate]:
    """Run one scenario per program through the real engine and keep what it wrote
    (once per process: the result is plain strings and numbers)."""
    if (seed, variants) not in _TEMPLATES:
        _TEMPLATES[(seed, variants)] = _build_templates(seed, variants)
    return _TEMPLATES[(seed, variants)]


def _build_templates(seed: int, variants: int) -> dict[str, ProgramTemplate]:
    import yaml

    from workflow.engine import clear_cache
    from workflow.models import Attachment
    from workflow.simulate import memory_session, run_scenario

    rng = random.Random(seed)
    out: dict[str, ProgramTemplate] = {}
    key = 0
    scenario_dir = ROOT / "tests" / "scenarios"
    for code, rel in SCENARIOS.items():
        # The engine caches compiled definitions by row id; every in-memory database
        # starts at id 1, so the cache must not carry over from one to the next.
        clear_cache()
        data = yaml.safe_load(Path(scenario_dir / rel).read_text(encoding="utf-8"))
        with memory_session() as session:
            sc = run_scenario(session, data, out=lambda _line: None)
            app = sc.apps[0]
            from workflow.engine import compiled

            program = compiled(session, app.definition_id).program
            kinds = [m.kind for m in program.materials]
            attachments = session.query(Attachment).filter_by(application_id=app.id).all()
            tpl = ProgramTemplate(
                code=code,
                number_prefix=program.number_prefix,
                materials=kinds,
                eligibility=_dumps(app.eligibility),
                award_trace=_dumps(app.award_trace),
                award_fen=int(app.award_fen or 0),
            )
            base = json.loads(_dumps(app.form_data))
            materials = [
                {
                    "id": a.id,
                    "kind": a.kind,
                    "filename": a.filename,
                    "sha256": a.sha256,
                    "size": a.size,
                }
                for a in attachments
            ]
            for _ in range(variants):
                form = _vary(base, rng)
                keys = list(form)
                draft = {k: form[k] for k in keys[: max(1, len(keys) // 2)]}
                snapshot = {
                    "form": form,
                    "materials": materials,
                    "frozen_at": "2026-03-02T09:00:00+00:00",
                }
                key += 1
                tpl.variants.append(Variant(key, _dumps(form), _dumps(draft), _dumps(snapshot)))
            out[code] = tpl
    clear_cache()
    return out

"""A sample decision letter: what a document worker renders once at start (so that every
job it forks inherits WeasyPrint's first-render work) and what the PDF benchmark times."""

from __future__ import annotations

from typing import Any

#: A one-page 资助决定书 (grant decision letter); every value is made up.
SAMPLE_LETTER: dict[str, Any] = {
    "authority": "长春市市场监督管理局",
    "doc_number": "长市监知字〔2026〕12号",
    "title": "关于给予吉林省长光精密光电科技有限公司知识产权资助的决定",
    "addressee": "吉林省长光精密光电科技有限公司",
    "credit_code": "91220101MA17XKQ23P",
    "program_name": "高价值专利培育项目",
    "call_title": "2026年度第一批",
    "body_paragraphs": [
        "根据《长春市知识产权资助管理办法》，你单位申报的项目经形式审查、专家评审和"
        "社会公示，符合资助条件。经研究，决定给予你单位知识产权资助。",
        "请于收到本决定之日起三十日内办理资金拨付手续。",
    ],
    "amount_figures": "¥100,000.00",
    "amount_capitals": "人民币壹拾万元整",
    "date_text": "2026年3月8日",
    "verification_code": "7KQ2-M9XD-4TPA",
    "verify_url": "https://shenbao.example.gov.cn/v/7KQ2M9XD4TPA",
    "lang": "zh",
}

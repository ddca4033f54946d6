"""Tests of the official document renderer (workflow.documents).

No timing assertions here: speed is measured by ``python -m bench.bench_pdf``.
"""

from __future__ import annotations

import base64
import io
import logging
import re
import shutil
import socket
import subprocess
import threading
import urllib.request
from typing import Any

import pytest
from fontTools.ttLib import TTFont
from PIL import Image
from pypdf import PdfReader

from workflow.documents import DocumentRenderError, render_html, render_pdf
from workflow.documents import render as render_module
from workflow.documents.qr import qr_data_uri
from workflow.documents.render import AssetFetchRefused, AssetURLFetcher
from workflow.documents.samples import SAMPLE_LETTER

# The sample letter the document workers warm up with (and the PDF benchmark times).
DECISION: dict[str, Any] = SAMPLE_LETTER

HOSTILE = {
    "script": "<script>alert(1)</script>",
    "img": '<img src="file:///etc/passwd">',
    "link": '<link rel="stylesheet" href="http://127.0.0.1:1/x.css">',
    "css": "<style>@import url(http://127.0.0.1:1/y.css); body{background:url(file:///etc/passwd)}</style>",
}

FONT_FILE = "fonts/ShenbaoSerifSC-Regular.woff2"


def approval(**changes: Any) -> dict[str, Any]:
    return {**DECISION, **changes}


def compact(text: str) -> str:
    """Text without any whitespace (PDF extraction inserts line breaks)."""
    return re.sub(r"\s+", "", text)


def pypdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def pdftotext(pdf: bytes) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    result = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", "-", "-"], input=pdf, capture_output=True, check=True
    )
    return result.stdout.decode("utf-8")


def embedded_fonts(pdf: bytes) -> dict[str, TTFont]:
    """BaseFont name -> embedded font program, for every font of every page."""
    fonts: dict[str, TTFont] = {}
    for page in PdfReader(io.BytesIO(pdf)).pages:
        for font_ref in page["/Resources"]["/Font"].values():
            font = font_ref.get_object()
            descendant = font["/DescendantFonts"][0].get_object()
            descriptor = descendant["/FontDescriptor"].get_object()
            stream = descriptor.get("/FontFile2") or descriptor.get("/FontFile3")
            assert stream is not None, f"{font['/BaseFont']} is not embedded"
            fonts[str(font["/BaseFont"])] = TTFont(io.BytesIO(stream.get_object().get_data()))
    return fonts


@pytest.fixture(scope="module")
def approval_pdf() -> bytes:
    return render_pdf("decision_approval.html", DECISION)


@pytest.fixture
def no_network_or_files(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail on any socket connection or urllib open; record what the fetcher is asked."""
    requested: list[str] = []
    original_fetch = AssetURLFetcher.fetch

    def spy_fetch(self: AssetURLFetcher, url: str, headers: Any = None) -> Any:
        requested.append(url)
        return original_fetch(self, url, headers)

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(AssetURLFetcher, "fetch", spy_fetch)
    monkeypatch.setattr(socket, "create_connection", forbidden)
    monkeypatch.setattr(socket.socket, "connect", forbidden)
    monkeypatch.setattr(urllib.request, "urlopen", forbidden)
    monkeypatch.setattr(urllib.request.OpenerDirector, "open", forbidden)
    return requested


# ---- content --------------------------------------------------------------------


def test_approval_contains_the_key_facts(approval_pdf: bytes) -> None:
    for text in (compact(pypdf_text(approval_pdf)), compact(pdftotext(approval_pdf))):
        assert "长市监知字〔2026〕12号" in text
        assert "吉林省长光精密光电科技有限公司：" in text
        assert "¥100,000.00" in text
        assert "人民币壹拾万元整" in text
        assert "91220101MA17XKQ23P" in text
        assert "7KQ2-M9XD-4TPA" in text
        assert "2026年3月8日" in text
        assert "—1—" in text  # page number, GB/T 9704 §7.5


def test_approval_is_one_page_under_40_kb(approval_pdf: bytes) -> None:
    assert approval_pdf.startswith(b"%PDF-")
    assert len(PdfReader(io.BytesIO(approval_pdf)).pages) == 1
    assert len(approval_pdf) < 40 * 1024


def test_rejection_contains_the_reason() -> None:
    data = {key: value for key, value in DECISION.items() if not key.startswith("amount")}
    data["title"] = "关于吉林省长光精密光电科技有限公司知识产权资助申请的不予资助决定"
    data["reason"] = "申报项目的专利权属存在争议，不符合《办法》第八条规定的条件。"
    text = compact(pdftotext(render_pdf("decision_rejection.html", data)))
    assert "不予资助理由：申报项目的专利权属存在争议" in text
    assert "行政复议" in text
    assert "¥" not in text


def test_recognition_lists_the_items() -> None:
    data = approval(
        title="关于认定吉林省长光精密光电科技有限公司专利密集型产品的决定",
        items=[
            {
                "name": "高精度光栅编码器",
                "patent_numbers": "ZL202310123456.7 等5件",
                "valid_until": "2029年3月7日",
            },
            {"name": "激光测距模组", "patent_numbers": "ZL202220987654.3"},
        ],
    )
    text = compact(pdftotext(render_pdf("decision_recognition.html", data)))
    assert "高精度光栅编码器" in text
    assert "ZL202310123456.7等5件" in text
    assert "激光测距模组" in text


def test_public_notice_has_table_period_and_objections() -> None:
    data = {
        "authority": "长春市市场监督管理局",
        "title": "2026年度长春市知识产权资助项目拟资助名单公示",
        "body_paragraphs": ["经形式审查和专家评审，现将拟资助名单予以公示。"],
        "rows": [
            {
                "addressee": "吉林省长光精密光电科技有限公司",
                "credit_code": "91220101MA17XKQ23P",
                "program_name": "高价值专利培育",
                "amount_figures": "100,000.00",
            },
            {
                "addressee": "长春一汽富晟集团有限公司",
                "credit_code": "91220101702488771X",
                "program_name": "专利导航",
                "amount_figures": "50,000.00",
            },
        ],
        "total_figures": "150,000.00",
        "notice_start_text": "2026年3月9日",
        "notice_end_text": "2026年3月15日",
        "objection_text": "如有异议，请于公示期内以书面形式实名向我局知识产权促进处反映。",
        "date_text": "2026年3月8日",
        "verification_code": "P9ZB-22QH-6LMC",
        "verify_url": "https://shenbao.example.gov.cn/v/P9ZB22QH6LMC",
    }
    text = compact(pdftotext(render_pdf("public_notice.html", data)))
    assert "长春一汽富晟集团有限公司" in text
    assert "150,000.00" in text
    assert "公示期：2026年3月9日至2026年3月15日" in text
    assert "如有异议" in text


def test_long_letter_breaks_pages_and_numbers_them() -> None:
    data = approval(body_paragraphs=DECISION["body_paragraphs"] * 6)
    pdf = render_pdf("decision_approval.html", data)
    assert len(PdfReader(io.BytesIO(pdf)).pages) >= 2
    text = compact(pdftotext(pdf))
    assert "—1—" in text and "—2—" in text


def test_english_labels_and_latin_profile() -> None:
    data = approval(
        authority="Changchun Administration for Market Regulation",
        doc_number="CCAMR IP [2026] No. 12",
        title="Decision on IP Funding",
        addressee="Jilin Changguang Precision Optics Co., Ltd.",
        program_name="High-value patent cultivation",
        call_title="2026, first batch",
        body_paragraphs=["It is decided to grant your company funding."],
        amount_figures="CNY 100,000.00",
        amount_capitals="one hundred thousand yuan",
        date_text="8 March 2026",
        lang="en",
    )
    pdf = render_pdf("decision_approval.html", data, font_profile="latin")
    assert "Amountgranted:onehundredthousandyuan(CNY100,000.00)." in compact(pdftotext(pdf))
    assert all("Shenbao-Serif-Latin" in name for name in embedded_fonts(pdf))


# ---- fonts ---------------------------------------------------------------------


def test_cjk_font_is_embedded_and_subset(approval_pdf: bytes) -> None:
    fonts = embedded_fonts(approval_pdf)
    regular = [name for name in fonts if re.fullmatch(r"/[A-Z]{6}\+Shenbao-Serif-SC", name)]
    assert regular, f"no subset CJK font among {sorted(fonts)}"
    font = fonts[regular[0]]
    assert "glyf" in font
    glyf = font["glyf"]
    drawn = [name for name in font.getGlyphOrder() if glyf[name].numberOfContours != 0]
    # A subset: only the glyphs of this letter keep their outlines (the shipped
    # font has 7,682), and they are real CJK outlines.
    assert 50 < len(drawn) < 400
    assert font["name"].getDebugName(1) == "Shenbao Serif SC"
    # Masthead and title use the bold face (小标宋-like).
    assert any(name.endswith("Shenbao-Serif-SC-Bold") for name in fonts)


@pytest.mark.parametrize("char", ["喆", "堃", "犇", "㵘"])
def test_rare_test_characters_are_outside_gb2312(char: str) -> None:
    with pytest.raises(UnicodeEncodeError):
        char.encode("gb2312")


def test_rare_characters_render_from_the_ext_font(caplog: pytest.LogCaptureFixture) -> None:
    addressee = "长春市陶喆堃犇科技有限公司"
    with caplog.at_level(logging.WARNING, logger="weasyprint"):
        pdf = render_pdf("decision_approval.html", approval(addressee=addressee))
    assert not [r for r in caplog.records if ".notdef" in r.getMessage()]
    assert addressee in compact(pdftotext(pdf))
    assert any(name.endswith("Shenbao-Serif-SC-Ext") for name in embedded_fonts(pdf))


# ---- escaping and fetching --------------------------------------------------------


def test_needs_ext_font_only_for_ideographs_outside_gb2312() -> None:
    assert not render_module.needs_ext_font("长春市市场监督管理局 ¥100,000.00〔〕《》淼")
    assert render_module.needs_ext_font("陶喆")
    assert render_module.needs_ext_font("㵘")  # Ext A: in Ext only if built with --ext-a


def test_loading_fonts_fetches_only_packaged_assets(no_network_or_files: list[str]) -> None:
    """A fresh thread loads fonts and stylesheets through the fetcher, assets only."""
    errors: list[BaseException] = []

    def load() -> None:
        try:
            render_module.warm_up(ext=True)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    thread = threading.Thread(target=load)
    thread.start()
    thread.join()
    assert not errors
    assert no_network_or_files, "nothing was fetched"
    assert all(url.startswith("shenbao-asset:") for url in no_network_or_files)
    assert "shenbao-asset:fonts/ShenbaoSerifSC-Regular.woff2" in no_network_or_files
    assert "shenbao-asset:fonts/ShenbaoSerifSCExt-Regular.woff2" in no_network_or_files


def test_html_escapes_user_values() -> None:
    html = render_html(
        "decision_approval.html",
        approval(addressee=HOSTILE["script"], body_paragraphs=list(HOSTILE.values())),
    )
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<img src="file:' not in html and "&lt;img src=&#34;file:///etc/passwd&#34;&gt;" in html
    assert "<link rel" not in html and "<style>@import" not in html


def test_hostile_values_print_literally_without_any_fetch(
    no_network_or_files: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    data = approval(addressee=HOSTILE["script"], body_paragraphs=list(HOSTILE.values()))
    with caplog.at_level(logging.WARNING, logger="weasyprint"):
        pdf = render_pdf("decision_approval.html", data)
    text = compact(pdftotext(pdf))
    for value in HOSTILE.values():
        assert compact(value) in text
    # Per document, the only resource loaded is the QR code the renderer made.
    assert no_network_or_files == [qr_data_uri(DECISION["verify_url"])]
    assert not [r for r in caplog.records if "fail" in r.getMessage().lower()]


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "http://127.0.0.1:1/",
        "https://example.com/font.woff2",
        "ftp://127.0.0.1/x",
        "fonts/ShenbaoSerifSC-Regular.woff2",
        "/etc/passwd",
        "shenbao-asset:../render.py",
        "shenbao-asset:fonts/../../render.py",
        "shenbao-asset:%2e%2e/render.py",
        "shenbao-asset:%2E%2E%2Frender.py",
        "shenbao-asset:/etc/passwd",
        "shenbao-asset:///etc/passwd",
        "shenbao-asset:..\\render.py",
        "shenbao-asset:fonts/OFL-NotoSerifCJK.txt",
        "shenbao-asset:fonts/missing.woff2",
        "shenbao-asset:fonts",
        "shenbao-asset:",
        "data:text/html;base64,PHNjcmlwdD4=",
        "data:image/svg+xml;base64," + base64.b64encode(b"<svg/>").decode(),
        "javascript:alert(1)",
    ],
)
def test_fetcher_refuses(url: str) -> None:
    fetcher = AssetURLFetcher()
    with pytest.raises(AssetFetchRefused):
        fetcher.fetch(url)
    with pytest.raises(AssetFetchRefused):
        fetcher(url)
    with pytest.raises(AssetFetchRefused):
        fetcher.open(urllib.request.Request(url) if "://" in url else url)  # noqa: S310


def test_fetcher_refuses_symlinks_out_of_assets(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assets = tmp_path / "assets"
    (assets / "fonts").mkdir(parents=True)
    secret = tmp_path / "secret.css"
    secret.write_text("body { color: red }")
    (assets / "fonts" / "evil.css").symlink_to(secret)
    (assets / "ok.css").write_text("p {}")
    monkeypatch.setattr(render_module, "ASSETS_DIR", assets)
    fetcher = AssetURLFetcher()
    assert fetcher.fetch("shenbao-asset:ok.css").read() == b"p {}"
    with pytest.raises(AssetFetchRefused):
        fetcher.fetch("shenbao-asset:fonts/evil.css")


def test_fetcher_serves_the_packaged_font_and_css() -> None:
    fetcher = AssetURLFetcher()
    response = fetcher.fetch("shenbao-asset:" + FONT_FILE)
    assert response.read(4) == b"wOF2"
    assert response.content_type == "font/woff2"
    css = fetcher.fetch("shenbao-asset:official.css")
    assert b"@page" in css.read()


def test_fetcher_serves_only_allowlisted_data_uris() -> None:
    uri = qr_data_uri("https://shenbao.example.gov.cn/v/X")
    with pytest.raises(AssetFetchRefused):
        AssetURLFetcher().fetch(uri)
    response = AssetURLFetcher(allowed_data_uris={uri}).fetch(uri)
    assert response.content_type == "image/png"
    assert response.read().startswith(b"\x89PNG")
    # Allowlisted but of a type that is never generated: still refused.
    html_uri = "data:text/html;base64,PHNjcmlwdD4="
    with pytest.raises(AssetFetchRefused):
        AssetURLFetcher(allowed_data_uris={html_uri}).fetch(html_uri)


def test_fetcher_has_no_urllib_handlers() -> None:
    assert AssetURLFetcher().handlers == []


# ---- contract ------------------------------------------------------------------


def test_qr_data_uri_is_a_deterministic_one_bit_png() -> None:
    uri = qr_data_uri("https://shenbao.example.gov.cn/v/7KQ2M9XD4TPA")
    assert uri == qr_data_uri("https://shenbao.example.gov.cn/v/7KQ2M9XD4TPA")
    assert uri.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    # One pixel per module: version 3 (29 modules) + 2 x 2 quiet zone.
    assert image.size[0] == image.size[1] and 25 <= image.size[0] <= 45
    assert image.mode in ("1", "L", "P")
    with pytest.raises(ValueError):
        qr_data_uri("")


def test_supplied_qr_must_be_the_generated_one() -> None:
    good = qr_data_uri(DECISION["verify_url"])
    assert good in render_html("decision_approval.html", approval(qr_data_uri=good))
    with pytest.raises(DocumentRenderError):
        render_html(
            "decision_approval.html",
            approval(
                qr_data_uri="data:image/svg+xml;base64," + base64.b64encode(b"<svg/>").decode()
            ),
        )


@pytest.mark.parametrize(
    ("template", "data"),
    [
        ("decision_approval.html", {k: v for k, v in DECISION.items() if k != "amount_figures"}),
        ("decision_rejection.html", DECISION),  # no reason
        ("decision_recognition.html", DECISION),  # no items
        ("decision_recognition.html", approval(items=[])),
        ("base_official.html", DECISION),
        ("_decision_facts.html", DECISION),
        ("../render.py", DECISION),
        ("decision_approval.html", approval(lang="fr")),
        ("decision_approval.html", approval(body_paragraphs="not a list")),
    ],
)
def test_bad_input_raises_document_render_error(template: str, data: dict[str, Any]) -> None:
    with pytest.raises(DocumentRenderError):
        render_pdf(template, data)


def test_unknown_font_profile_is_refused() -> None:
    with pytest.raises(DocumentRenderError):
        render_pdf("decision_approval.html", DECISION, font_profile="comic")  # type: ignore[arg-type]


def test_a_worker_warm_up_renders_the_sample_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers render the sample before forking (and only when asked); it must stay a
    valid one-page letter."""
    from workflow.documents.samples import SAMPLE_LETTER

    real = render_module.render_pdf
    rendered: list[tuple[str, Any]] = []

    def spy(template_name: str, data: Any, **kwargs: Any) -> bytes:
        rendered.append((template_name, data))
        return real(template_name, data, **kwargs)

    monkeypatch.setattr(render_module, "render_pdf", spy)
    render_module.warm_up()
    assert rendered == []
    render_module.warm_up(render_sample=True)
    assert rendered == [("decision_approval.html", SAMPLE_LETTER)]
    pdf = real("decision_approval.html", SAMPLE_LETTER)
    assert len(PdfReader(io.BytesIO(pdf)).pages) == 1
    text = compact(pypdf_text(pdf))
    assert compact(SAMPLE_LETTER["doc_number"]) in text
    assert compact(SAMPLE_LETTER["amount_capitals"]) in text

"""Render official documents (decision letters, public notices) to HTML and PDF.

Pure rendering: plain data in (dicts of strings and numbers), ``str``/``bytes``
out.  No Flask, no database.  Layout follows GB/T 9704-2012, see
``assets/official.css`` and ``docs/DOCUMENTS.md``.

Templates
---------
``decision_approval.html``     奖励/资助决定书 (grant decision)
``decision_rejection.html``    不予资助决定书 (rejection, with the reason)
``decision_recognition.html``  认定决定书 (e.g. patent-dense products, with ``items``)
``public_notice.html``         公示名单 (list of applicants, notice period, objections)

Data contract for decisions
---------------------------
All values are plain ``str`` unless noted; user-supplied text is HTML-escaped.

``authority``          issuing authority, e.g. ``"长春市市场监督管理局"``
``doc_number``         document number, e.g. ``"长市监知字〔2026〕12号"``
``title``              e.g. ``"关于给予××有限公司知识产权资助的决定"``
``addressee``          organisation the decision is addressed to
``credit_code``        its unified social credit code (统一社会信用代码)
``program_name``       programme applied for
``call_title``         call for applications (申报批次)
``body_paragraphs``    list of ``str``, one per paragraph (indented two characters)
``amount_figures``     ``"¥100,000.00"`` (approval; absent for a rejection)
``amount_capitals``    ``"人民币壹拾万元整"`` (approval)
``reason``             reason for the rejection (rejection only)
``items``              list of dicts ``{"name", "patent_numbers", "valid_until"}``
                       (recognition; optional elsewhere)
``date_text``          date of the document, ``"2026年3月8日"``
``verification_code``  code printed in the footer
``verify_url``         URL encoded in the QR code
``qr_data_uri``        optional: ``qr.qr_data_uri(verify_url)``; generated when absent
``lang``               ``"zh"`` (default) or ``"en"`` (English labels)

Optional: ``masthead`` (red header text, default ``authority``), ``remedy``
(rejection: the appeal paragraph; a default is printed), ``strict_gb9704``
(``True`` puts the masthead 35 mm below the type area as in §7.2.4).

Public notice: ``authority``, ``title``, ``body_paragraphs``, ``rows`` (list of
dicts ``{"addressee", "credit_code", "program_name", "amount_figures"}``),
``total_figures`` (optional), ``notice_start_text``, ``notice_end_text``,
``objection_text``, ``date_text``, ``verification_code``, ``verify_url``,
``qr_data_uri`` (optional), ``lang``.

Security
--------
WeasyPrint loads every resource through :class:`AssetURLFetcher`, which serves
only files inside this package's ``assets/`` folder (``shenbao-asset:`` URLs)
and the one ``data:`` URI of the document's own QR code; everything else
(``file:``, ``http(s):``, ``ftp:``, traversal, symlinks out of the folder...)
raises, which WeasyPrint logs and skips.  The fetcher has no urllib handler at
all, so nothing can reach the network or the file system behind its back.

Speed
-----
One :class:`~weasyprint.text.fonts.FontConfiguration` and the parsed
stylesheets are cached per thread (Pango font maps are not thread-safe): the
fonts are decoded and registered with fontconfig once per thread (~0.3 s, see
:func:`warm_up`), not per document.  The rare-character font is registered
only when a document needs it.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import jinja2
from weasyprint import CSS, HTML
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import URLFetcher, URLFetcherResponse

from .qr import qr_data_uri

PACKAGE_DIR = Path(__file__).resolve().parent
ASSETS_DIR = PACKAGE_DIR / "assets"
TEMPLATES_DIR = PACKAGE_DIR / "templates"

#: URL scheme of packaged assets, e.g. ``shenbao-asset:fonts/x.woff2``.
ASSET_SCHEME = "shenbao-asset"

#: File types the fetcher agrees to serve from ``assets/``.
ASSET_TYPES = {
    ".css": "text/css",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

#: ``data:`` media types that may be loaded (only the QR code, see AssetURLFetcher).
DATA_URI_TYPES = ("image/svg+xml", "image/png")

FontProfile = Literal["cjk", "latin"]

#: Last resort for characters none of the shipped fonts has (CJK Ext A/B...):
#: the full system font *if installed* (Debian fonts-noto-cjk), so that the rare
#: character at least keeps a Song style.  Not reproducible across machines;
#: text made of GB 2312 characters and other CJK Unified Ideographs never reaches it.
SYSTEM_FALLBACK = '"Noto Serif CJK SC"'

#: font-family stacks, by (profile, lang).  "Shenbao Serif SC Ext" only
#: serves characters missing from the GB 2312 core font.
FONT_STACKS: dict[tuple[str, str], str] = {
    ("cjk", "zh"): f'"Shenbao Serif SC", "Shenbao Serif SC Ext", {SYSTEM_FALLBACK}',
    ("cjk", "en"): (
        f'"Shenbao Serif Latin", "Shenbao Serif SC", "Shenbao Serif SC Ext", {SYSTEM_FALLBACK}'
    ),
    ("latin", "zh"): '"Shenbao Serif Latin"',
    ("latin", "en"): '"Shenbao Serif Latin"',
}

TEMPLATES = (
    "decision_approval.html",
    "decision_rejection.html",
    "decision_recognition.html",
    "public_notice.html",
)

_DECISION_FIELDS = (
    "authority",
    "doc_number",
    "title",
    "addressee",
    "credit_code",
    "program_name",
    "call_title",
    "body_paragraphs",
    "date_text",
    "verification_code",
    "verify_url",
)

REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "decision_approval.html": (*_DECISION_FIELDS, "amount_figures", "amount_capitals"),
    "decision_rejection.html": (*_DECISION_FIELDS, "reason"),
    "decision_recognition.html": (*_DECISION_FIELDS, "items"),
    "public_notice.html": (
        "authority",
        "title",
        "body_paragraphs",
        "rows",
        "notice_start_text",
        "notice_end_text",
        "objection_text",
        "date_text",
        "verification_code",
        "verify_url",
    ),
}

LABELS: dict[str, dict[str, str]] = {
    "zh": {
        "html_lang": "zh-CN",
        "colon": "：",
        "seal": "印章",
        "credit_code": "统一社会信用代码：",
        "program": "申报项目：",
        "call": "申报批次：",
        "amount": "资助金额：",
        "reason": "不予资助理由：",
        "closing": "特此决定。",
        "remedy": (
            "如对本决定不服，可以自收到本决定书之日起六十日内依法申请行政复议，"
            "或者在六个月内依法向人民法院提起行政诉讼。"
        ),
        "recognized": "认定产品清单如下：",
        "no": "序号",
        "product": "产品名称",
        "patents": "核心专利",
        "valid_until": "有效期至",
        "applicant": "申报单位",
        "credit_code_short": "统一社会信用代码",
        "program_short": "申报项目",
        "amount_short": "拟资助金额（元）",
        "total": "合计",
        "notice_period": "公示期：",
        "to": "至",
        "objection": "异议受理：",
        "verify_code": "验证码：",
        "verify_hint": "扫码核验 Scan to verify",
        "paren_open": "（",
        "paren_close": "）",
        "stop": "。",
    },
    "en": {
        "html_lang": "en",
        "colon": ":",
        "seal": "SEAL",
        "credit_code": "Unified social credit code: ",
        "program": "Programme: ",
        "call": "Call for applications: ",
        "amount": "Amount granted: ",
        "reason": "Reason for the rejection: ",
        "closing": "It is hereby so decided.",
        "remedy": (
            "If you disagree with this decision, you may apply for administrative "
            "reconsideration within sixty days of receipt, or bring an administrative "
            "lawsuit before a people's court within six months."
        ),
        "recognized": "The recognised products are:",
        "no": "No.",
        "product": "Product",
        "patents": "Core patents",
        "valid_until": "Valid until",
        "applicant": "Applicant",
        "credit_code_short": "Credit code",
        "program_short": "Programme",
        "amount_short": "Amount (CNY)",
        "total": "Total",
        "notice_period": "Notice period: ",
        "to": " to ",
        "objection": "Objections: ",
        "verify_code": "Verification code: ",
        "verify_hint": "Scan to verify",
        "paren_open": " (",
        "paren_close": ")",
        "stop": ".",
    },
}


class DocumentRenderError(Exception):
    """A document could not be rendered (bad template name, missing data, ...)."""


class AssetFetchRefused(ValueError):
    """Raised by :class:`AssetURLFetcher` for any URL it does not serve."""


class AssetURLFetcher(URLFetcher):
    """WeasyPrint URL fetcher that serves only the package's ``assets/`` folder.

    Accepted:

    * ``shenbao-asset:<relative path>`` for a regular file under ``assets/``
      with an extension in :data:`ASSET_TYPES`, after resolving symlinks;
    * ``data:`` URIs listed in ``allowed_data_uris`` (the renderer passes the
      QR code it generated) with a media type in :data:`DATA_URI_TYPES`.

    Everything else raises :class:`AssetFetchRefused`: WeasyPrint logs a
    warning and renders without the resource.  No urllib handler is
    installed, so even a direct ``open()`` cannot reach a network or a file.
    """

    def __init__(self, allowed_data_uris: frozenset[str] | set[str] = frozenset()) -> None:
        # Deliberately skip URLFetcher.__init__: it installs HTTP/FTP/file
        # handlers.  An OpenerDirector without handlers can open nothing.
        super(URLFetcher, self).__init__()
        self._fail_on_errors = False
        self._timeout = 0
        self._http_headers = {}
        self._allowed_protocols = (ASSET_SCHEME, "data")
        self._request = None
        self._allowed_data_uris = frozenset(allowed_data_uris)

    def fetch(self, url: str, headers: Mapping[str, str] | None = None) -> URLFetcherResponse:
        if not isinstance(url, str):
            raise AssetFetchRefused("URL must be a string")
        scheme, separator, rest = url.partition(":")
        scheme = scheme.lower()
        if not separator:
            raise AssetFetchRefused(f"refused relative URL: {url[:80]!r}")
        if scheme == "data":
            return self._fetch_data(url)
        if scheme != ASSET_SCHEME:
            raise AssetFetchRefused(f"refused URL scheme {scheme!r}: {url[:80]!r}")
        path = self.resolve_asset(rest)
        body = path.read_bytes()
        headers_out = {"Content-Type": ASSET_TYPES[path.suffix.lower()]}
        return URLFetcherResponse(url, body, headers_out)

    def open(self, url: Any, data: Any = None, timeout: Any = None) -> URLFetcherResponse:
        full_url = getattr(url, "full_url", url)
        return self.fetch(full_url)

    @staticmethod
    def resolve_asset(reference: str) -> Path:
        """Return the file under ``assets/`` for ``reference`` or raise."""
        reference = reference.split("#", 1)[0].split("?", 1)[0]
        relative = unquote(reference)
        if (
            not relative
            or "\x00" in relative
            or "\\" in relative
            or relative.startswith("/")
            or ".." in relative.split("/")
        ):
            raise AssetFetchRefused(f"refused asset path: {reference[:80]!r}")
        root = ASSETS_DIR.resolve()
        try:
            path = (root / relative).resolve(strict=True)
        except (OSError, RuntimeError) as error:
            raise AssetFetchRefused(f"no such asset: {reference[:80]!r}") from error
        if not path.is_relative_to(root) or not path.is_file():
            raise AssetFetchRefused(f"refused asset outside assets/: {reference[:80]!r}")
        if path.suffix.lower() not in ASSET_TYPES:
            raise AssetFetchRefused(f"refused asset type: {reference[:80]!r}")
        return path

    def _fetch_data(self, url: str) -> URLFetcherResponse:
        if url not in self._allowed_data_uris:
            raise AssetFetchRefused("refused data: URI not generated by the renderer")
        header, _, payload = url[len("data:") :].partition(",")
        media_type, *params = header.split(";")
        if media_type not in DATA_URI_TYPES or params[-1:] != ["base64"]:
            raise AssetFetchRefused(f"refused data: URI of type {media_type!r}")
        body = base64.b64decode(payload, validate=True)
        return URLFetcherResponse(url, body, {"Content-Type": media_type})


def asset_url(relative_path: str) -> str:
    """``shenbao-asset:`` URL of a file in ``assets/``."""
    return f"{ASSET_SCHEME}:{relative_path}"


# ---- Jinja --------------------------------------------------------------------

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    autoescape=True,  # every template, whatever its extension
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)


def _context(template_name: str, data: Mapping[str, Any]) -> dict[str, Any]:
    if template_name not in TEMPLATES:
        raise DocumentRenderError(f"unknown document template: {template_name!r}")
    if not isinstance(data, Mapping):
        raise DocumentRenderError("document data must be a mapping")
    missing = [
        field
        for field in REQUIRED_FIELDS[template_name]
        if data.get(field) in (None, "") or (field in ("items", "rows") and not data[field])
    ]
    if missing:
        raise DocumentRenderError(f"{template_name}: missing field(s) {', '.join(missing)}")
    lang = data.get("lang") or "zh"
    if lang not in LABELS:
        raise DocumentRenderError(f"unsupported language {lang!r}")
    for field in ("body_paragraphs", "items", "rows"):
        value = data.get(field, [])
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            raise DocumentRenderError(f"{field} must be a list")

    context: dict[str, Any] = {
        "items": [],
        "rows": [],
        "remedy": LABELS[lang]["remedy"],
        "total_figures": None,
        "strict_gb9704": False,
        "reason": None,
        "amount_figures": None,
        "amount_capitals": None,
    }
    context.update(data)
    context["lang"] = lang
    context["t"] = LABELS[lang]
    context["masthead"] = str(data.get("masthead") or data["authority"])
    context["masthead_font_mm"] = _masthead_font_mm(context["masthead"], lang)
    expected_qr = qr_data_uri(str(data["verify_url"]))
    supplied_qr = data.get("qr_data_uri")
    if supplied_qr not in (None, "", expected_qr):
        raise DocumentRenderError("qr_data_uri must be qr.qr_data_uri(verify_url)")
    context["qr_data_uri"] = expected_qr
    return context


def _masthead_font_mm(text: str, lang: str) -> float:
    """Font size that fits the red masthead on one line of the 156 mm type area."""
    if lang == "en":
        return round(min(10.0, 300.0 / max(len(text), 1)), 2)
    return round(min(15.0, 146.0 / max(len(text), 1)), 2)


def render_html(template_name: str, data: Mapping[str, Any]) -> str:
    """Render ``template_name`` (one of :data:`TEMPLATES`) with ``data`` to HTML.

    The HTML carries no stylesheet link: :func:`render_pdf` applies the cached
    ``fonts.css`` + ``official.css``.
    """
    context = _context(template_name, data)
    try:
        return _environment.get_template(template_name).render(context)
    except jinja2.TemplateError as error:
        raise DocumentRenderError(f"{template_name}: {error}") from error


# ---- WeasyPrint ---------------------------------------------------------------


_IDEOGRAPH_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff]")


def needs_ext_font(text: str) -> bool:
    """Whether ``text`` has a CJK ideograph (URO or Ext A) outside GB 2312.

    Such characters are not in "Shenbao Serif SC" (see scripts/build_fonts.py);
    "Shenbao Serif SC Ext" has the URO ones (and Ext A if built ``--ext-a``).
    """
    for char in set(_IDEOGRAPH_RE.findall(text)):
        try:
            char.encode("gb2312")
        except UnicodeEncodeError:
            return True
    return False


class _Resources:
    """Font configuration and parsed stylesheets, reused across documents.

    ``fonts.css`` (core CJK + Latin faces) and ``official.css`` are parsed
    once; registering an ``@font-face`` decodes the WOFF2 file and hands it to
    fontconfig, which is the expensive part (~0.3 s).  ``fonts-ext.css`` (the
    2.6 MB rare-character font) is only parsed when a document needs it.
    """

    def __init__(self) -> None:
        self.fetcher = AssetURLFetcher()
        self.font_config = FontConfiguration()
        self.fonts_css = self._css("fonts.css")
        self.layout_css = self._css("official.css")
        self.ext_css: CSS | None = None
        self._stack_css: dict[tuple[str, str], CSS] = {}

    def _css(self, name: str) -> CSS:
        return CSS(url=asset_url(name), url_fetcher=self.fetcher, font_config=self.font_config)

    def stylesheets(self, profile: str, lang: str, *, ext: bool = False) -> list[CSS]:
        key = (profile, lang)
        if key not in self._stack_css:
            self._stack_css[key] = CSS(
                string=f"html {{ font-family: {FONT_STACKS[key]}; }}",
                url_fetcher=self.fetcher,
                font_config=self.font_config,
            )
        sheets = [self.fonts_css, self.layout_css, self._stack_css[key]]
        if ext and profile == "cjk":
            if self.ext_css is None:
                self.ext_css = self._css("fonts-ext.css")
            sheets.append(self.ext_css)
        return sheets


_local = threading.local()


def _resources() -> _Resources:
    resources = getattr(_local, "resources", None)
    if resources is None:
        resources = _local.resources = _Resources()
    return resources


def warm_up(*, ext: bool = False, render_sample: bool = False) -> None:
    """Load fonts and stylesheets for this thread now (e.g. at worker start).

    Call it before forking workers (RQ forks a work horse per job) so that
    every job inherits the loaded fonts.  ``ext=True`` also loads the
    rare-character font.  ``render_sample=True`` also renders a sample letter,
    so that WeasyPrint's first-render work (its C bindings, the templates'
    compilation, font shaping caches) is done once instead of in every job:
    measured 0.37 s -> 0.16 s per forked job.
    """
    resources = _resources()
    if ext:
        resources.stylesheets("cjk", "zh", ext=True)
    if render_sample:
        from .samples import SAMPLE_LETTER

        render_pdf("decision_approval.html", SAMPLE_LETTER)


def render_pdf(
    template_name: str, data: Mapping[str, Any], *, font_profile: FontProfile = "cjk"
) -> bytes:
    """Render ``template_name`` with ``data`` to PDF bytes.

    ``font_profile="latin"`` uses the Latin-only font stack (benchmark
    baseline, or documents known to be Latin-only).
    """
    if font_profile not in ("cjk", "latin"):
        raise DocumentRenderError(f"unknown font profile {font_profile!r}")
    html = render_html(template_name, data)
    context_lang = data.get("lang") or "zh"
    resources = _resources()
    fetcher = AssetURLFetcher(allowed_data_uris={qr_data_uri(str(data["verify_url"]))})
    try:
        document = HTML(string=html, url_fetcher=fetcher, base_url=None)
        stylesheets = resources.stylesheets(font_profile, context_lang, ext=needs_ext_font(html))
        pdf = document.write_pdf(stylesheets=stylesheets, font_config=resources.font_config)
    except Exception as error:  # WeasyPrint raises many types
        raise DocumentRenderError(f"{template_name}: PDF rendering failed: {error}") from error
    if not pdf:
        raise DocumentRenderError(f"{template_name}: WeasyPrint returned no PDF")
    return pdf

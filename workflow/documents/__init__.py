"""Official PDF documents (decision letters, public notices) for Shenbao.

A pure renderer: plain data in, HTML or PDF out, laid out after GB/T 9704-2012
with fonts shipped in ``assets/fonts``.  See :mod:`workflow.documents.render`
for the data contract and ``docs/DOCUMENTS.md`` for the design.
"""

from .render import DocumentRenderError, render_html, render_pdf

__all__ = ["DocumentRenderError", "render_html", "render_pdf"]

"""Rebuild the fonts shipped in ``workflow/documents/assets/fonts/``.

The PDF renderer (``workflow.documents``) embeds its own fonts instead of
relying on whatever fontconfig finds on the host, so that a decision letter
looks the same on every machine.  This script derives those fonts from the
Debian font packages:

* ``ShenbaoSerifSC-Regular.woff2`` / ``ShenbaoSerifSC-Bold.woff2`` ("core"):
  Noto Serif CJK SC (a Song/Ming serif, package ``fonts-noto-cjk``) cut down
  to ASCII, Latin-1, general and CJK punctuation, full-width forms and the
  7,445 characters of GB 2312 (6,763 hanzi).
* ``ShenbaoSerifSCExt-Regular.woff2`` ("ext"): every other CJK Unified
  Ideograph (U+4E00..U+9FFF) the regular face covers, about 14,200 glyphs. It
  is only used for characters missing from the core font (rare characters in
  person and company names such as 喆, 堃, 犇).
* ``ShenbaoSerifLatin-Regular.woff2`` / ``-Bold.woff2``: Liberation Serif
  (package ``fonts-liberation2``) cut down to Latin-1 + Latin Extended-A +
  punctuation, for English documents and for the Latin benchmark baseline.

Why the fonts are transformed and not just subset (see ``docs/DOCUMENTS.md``):

* The CFF (PostScript) outlines of Noto CJK are converted to TrueType ``glyf``
  outlines (cu2qu, max error 4/1000 em).  WeasyPrint subsets embedded fonts
  with ``retain-gids``: every glyph id below the highest one used survives as
  an empty glyph.  An empty CFF glyph costs ~7 incompressible bytes (charstring
  offset, charset, FDSelect), an empty ``glyf`` glyph costs a repeated ``loca``
  offset that deflate squeezes to nothing.  With CFF a one-page letter weighs
  ~100 KB, with ``glyf`` about a third of that.
* The CJK fonts are scaled from 1000 to 400 units per em: coordinate deltas
  get smaller and deflate better.  Together with the 4/1000 em cu2qu
  tolerance this makes the glyphs in the PDF 19 % smaller than a 1000-unit,
  1/1000-tolerance conversion; 1/400 em is 0.014 mm at 3号 (0.04 mm in the
  15 mm masthead), below what print or screen can show.
* Glyphs are reordered: ASCII, punctuation and the 3,755 GB 2312 level-1
  hanzi first.  WeasyPrint keeps every glyph id below the highest one used,
  so ordinary letters never pay for the level-2 half of the font.
* Vertical metrics, BASE and the OpenType layout tables (GSUB/GPOS/GDEF) are
  dropped: documents are set horizontally, WeasyPrint strips GSUB/GPOS from the
  embedded subset anyway and HarfBuzz shapes faster without them.
* Fonts are stored as WOFF2 with the *null* ``glyf``/``loca`` transform: plain
  brotli, which fontTools decodes in ~70 ms instead of ~4.5 s for the
  transformed variant.

All fonts are licensed under the SIL Open Font License 1.1.  The OFL forbids
Modified Versions from using Reserved Font Names ("Source" for Noto CJK,
"Liberation"/"Tinos" for Liberation) and Noto is a Google trademark, so the
derived fonts are renamed "Shenbao Serif SC" / "Shenbao Serif Latin".  The
licence texts are written next to the fonts.

Usage::

    .venv/bin/python scripts/build_fonts.py            # rebuild everything
    .venv/bin/python scripts/build_fonts.py --only latin --max-err 1.0

The build is deterministic (fixed timestamps); it takes about two minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from fontTools import subset
from fontTools.pens.cu2quPen import Cu2QuPen
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.ttLib import TTCollection, TTFont, newTable, woff2
from fontTools.ttLib.scaleUpem import scale_upem

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "workflow" / "documents" / "assets" / "fonts"

NOTO_REGULAR = Path("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc")
NOTO_BOLD = Path("/usr/share/fonts/opentype/noto/NotoSerifCJK-Bold.ttc")
NOTO_COPYRIGHT = Path("/usr/share/doc/fonts-noto-cjk/copyright")
NOTO_FACE = "Noto Serif CJK SC"
LIBERATION_DIR = Path("/usr/share/fonts/truetype/liberation2")
LIBERATION_COPYRIGHT = Path("/usr/share/doc/fonts-liberation2/copyright")

CJK_FAMILY = "Shenbao Serif SC"
CJK_EXT_FAMILY = "Shenbao Serif SC Ext"
LATIN_FAMILY = "Shenbao Serif Latin"

#: Tables that are useless for horizontal PDF output.
DROP_TABLES = ["vhea", "vmtx", "VORG", "BASE", "DSIG", "GDEF", "GSUB", "GPOS", "JSTF"]

#: maxp 1.0 fields for an unhinted TrueType font (all zero but maxZones).
MAXP_V1_ZERO_FIELDS = (
    "maxZones",
    "maxTwilightPoints",
    "maxStorage",
    "maxFunctionDefs",
    "maxInstructionDefs",
    "maxStackElements",
    "maxSizeOfInstructions",
    "maxComponentElements",
    "maxComponentDepth",
)

#: Extra punctuation and symbols commonly found in official documents,
#: partly outside GB 2312 (e.g. U+2014/U+2015 variants, U+FFE5 yen sign).
EXTRA_SYMBOLS = "〔〕〖〗【】「」『』〈〉《》（）、。，：；？！“”‘’—―…·•・￥¥×÷±°℃№※‰□○●△▲☆★"


def gb2312_chars() -> set[str]:
    """All 7,445 characters of GB 2312 (symbols + level 1 and 2 hanzi)."""
    chars: set[str] = set()
    for high in range(0xA1, 0xF8):
        for low in range(0xA1, 0xFF):
            try:
                chars.add(bytes((high, low)).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    return chars


def core_codepoints() -> set[int]:
    """Code points of the core font (before intersecting with the font's cmap)."""
    points = set(range(0x20, 0x7F)) | set(range(0xA0, 0x100))
    points |= set(range(0x2000, 0x2070))  # general punctuation
    points |= set(range(0x3000, 0x3040))  # CJK symbols and punctuation
    points |= set(range(0xFF01, 0xFF5F)) | set(range(0xFFE0, 0xFFE7))  # full-width forms
    points |= {ord(char) for char in gb2312_chars()}
    points |= {ord(char) for char in EXTRA_SYMBOLS}
    return points


def priority_codepoints() -> list[int]:
    """Code points in the glyph order wanted for the core font.

    WeasyPrint keeps every glyph id up to the highest one used (empty), so the
    characters of an ordinary letter should have low ids: ASCII and
    punctuation first, then the 3,755 frequent hanzi of GB 2312 level 1, then
    the rest.  This shrinks the embedded ``loca``/``hmtx`` tables by half.
    """
    points = list(range(0x20, 0x7F))
    points += [ord(char) for char in EXTRA_SYMBOLS]
    points += list(range(0x3000, 0x3040)) + list(range(0xFF01, 0xFF5F))
    for high in range(0xB0, 0xD8):  # GB 2312 level 1 (rows 16-55), pinyin order
        for low in range(0xA1, 0xFF):
            try:
                points.append(ord(bytes((high, low)).decode("gb2312")))
            except UnicodeDecodeError:
                continue
    return points


def ext_codepoints(cmap: dict[int, str], core: set[int], *, ext_a: bool = False) -> set[int]:
    """CJK Unified Ideographs of the face that the core font does not have.

    With ``ext_a`` also CJK Extension A (U+3400..U+4DBF, 6,582 glyphs, +1.2 MB).
    """
    points = set(range(0x4E00, 0xA000))
    if ext_a:
        points |= set(range(0x3400, 0x4DC0))
    return {point for point in points if point in cmap} - core


def latin_codepoints() -> set[int]:
    points = set(range(0x20, 0x7F)) | set(range(0xA0, 0x180))
    points |= set(range(0x2010, 0x2040)) | {0x20AC, 0x2116, 0x2122}
    return points


def load_ttc_face(path: Path, family: str) -> TTFont:
    """Return the face of a TrueType/OpenType collection whose family is ``family``."""
    collection = TTCollection(str(path), lazy=True)
    for index, face in enumerate(collection.fonts):
        if face["name"].getDebugName(1) == family:
            return TTFont(str(path), fontNumber=index, recalcTimestamp=False)
    raise SystemExit(f"{family!r} not found in {path}")


def subset_font(font: TTFont, codepoints: Iterable[int], *, keep_layout: bool) -> None:
    """Subset ``font`` in place to ``codepoints`` (glyph ids are renumbered)."""
    options = subset.Options()
    options.drop_tables += ["FFTM"] + ([] if keep_layout else DROP_TABLES)
    options.layout_features = ["kern", "liga"] if keep_layout else []
    options.name_IDs = ["*"]
    options.name_languages = ["*"]
    options.notdef_outline = True
    options.hinting = False
    options.glyph_names = False
    options.recalc_timestamp = False
    subsetter = subset.Subsetter(options)
    cmap = font.getBestCmap()
    subsetter.populate(unicodes=sorted(point for point in codepoints if point in cmap))
    subsetter.subset(font)


def cff_to_glyf(font: TTFont, max_err: float) -> None:
    """Convert CFF outlines to quadratic TrueType outlines in place."""
    if "CFF " not in font:
        return
    glyph_order = font.getGlyphOrder()
    glyph_set = font.getGlyphSet()
    glyf = newTable("glyf")
    glyf.glyphOrder = glyph_order
    glyf.glyphs = {}
    for name in glyph_order:
        pen = TTGlyphPen(glyph_set)
        glyph_set[name].draw(Cu2QuPen(pen, max_err, reverse_direction=True))
        glyf[name] = pen.glyph()
    font["loca"] = newTable("loca")
    font["glyf"] = glyf
    del font["CFF "]
    for tag in ("VORG",):
        if tag in font:
            del font[tag]
    maxp = newTable("maxp")
    maxp.tableVersion = 0x00010000
    for attribute in MAXP_V1_ZERO_FIELDS:
        setattr(maxp, attribute, 0)
    maxp.maxZones = 1
    font["maxp"] = maxp
    post = font["post"]
    post.formatType = 3.0
    post.extraNames = []
    post.mapping = {}
    font.sfntVersion = "\x00\x01\x00\x00"


def reorder_glyphs(font: TTFont, priority: Iterable[int]) -> None:
    """Move the glyphs of ``priority`` code points to the front (after .notdef)."""
    for tag in list(font.keys()):  # decompile every table under the current order
        if tag != "GlyphOrder":
            font[tag]
    cmap = font.getBestCmap()
    old_order = font.getGlyphOrder()
    new_order = [old_order[0]]
    seen = set(new_order)
    for point in priority:
        name = cmap.get(point)
        if name is not None and name not in seen:
            new_order.append(name)
            seen.add(name)
    new_order += [name for name in old_order if name not in seen]
    font.setGlyphOrder(new_order)
    font["glyf"].glyphOrder = new_order


def rename(font: TTFont, family: str, style: str, note: str) -> None:
    """Give the Modified Version its own name (OFL clause 3) and a provenance note."""
    name = font["name"]
    ps_family = family.replace(" ", "")
    keep = {0, 7, 8, 9, 11, 12, 13, 14}
    name.names = [
        record for record in name.names if record.nameID in keep and record.platformID == 3
    ]
    full = family if style == "Regular" else f"{family} {style}"
    version = f"Version {font['head'].fontRevision:.3f}; {note}"
    for name_id, value in (
        (1, family),
        (2, style),
        (3, f"{ps_family}-{style};{font['head'].fontRevision:.3f}"),
        (4, full),
        (5, version),
        (6, f"{ps_family}-{style}"),
        (10, note),
    ):
        name.setName(value, name_id, 3, 1, 0x409)


def save_woff2(font: TTFont, path: Path) -> None:
    """Save ``font`` as WOFF2 without the glyf transform (fast to decode)."""
    font.recalcTimestamp = False
    tmp = path.with_suffix(".ttf.tmp")
    font.save(str(tmp))
    woff2.compress(str(tmp), str(path), transform_tables=set())
    tmp.unlink()


def debian_ofl_text(copyright_path: Path, stanza: str) -> str:
    """Extract a licence stanza (e.g. ``License: SIL-1.1``) from a Debian copyright file."""
    lines = copyright_path.read_text(encoding="utf-8").splitlines()
    starts = [index for index, line in enumerate(lines) if line.strip() == stanza]
    if not starts:
        raise SystemExit(f"{stanza!r} not found in {copyright_path}")
    body: list[str] = []
    for line in lines[starts[-1] + 1 :]:
        if not line.startswith(" "):
            break
        text = line[1:]
        body.append("" if text == "." else text)
    return "\n".join(body).strip("\n") + "\n"


def write_licences(out_dir: Path) -> None:
    noto_header = (
        "Shenbao Serif SC and Shenbao Serif SC Ext are Modified Versions of\n"
        "Noto Serif CJK SC (https://github.com/notofonts/noto-cjk), built by\n"
        "scripts/build_fonts.py from the Debian package fonts-noto-cjk.\n\n"
        "Copyright 2017-2022 Adobe (http://www.adobe.com/), with Reserved Font Name "
        "'Source'.\nNoto is a trademark of Google Inc.\n\n"
        "This Font Software is licensed under the SIL Open Font License, Version 1.1.\n\n"
    )
    latin_header = (
        "Shenbao Serif Latin is a Modified Version of Liberation Serif\n"
        "(https://github.com/liberationfonts), built by scripts/build_fonts.py from\n"
        "the Debian package fonts-liberation2.\n\n"
        "Digitized data copyright (c) 2010 Google Corporation with Reserved Font Arimo,\n"
        "Tinos and Cousine.\n"
        "Copyright (c) 2012 Red Hat, Inc. with Reserved Font Name Liberation.\n"
        "Liberation is a trademark of Red Hat, Inc.\n\n"
    )
    if NOTO_COPYRIGHT.exists():
        text = debian_ofl_text(NOTO_COPYRIGHT, "License: SIL-1.1")
        (out_dir / "OFL-NotoSerifCJK.txt").write_text(noto_header + text, encoding="utf-8")
    if LIBERATION_COPYRIGHT.exists():
        text = debian_ofl_text(LIBERATION_COPYRIGHT, "License: SIL-OFL-1.1")
        (out_dir / "OFL-LiberationSerif.txt").write_text(latin_header + text, encoding="utf-8")


def build_cjk(
    out_dir: Path, max_err: float, upem: int, parts: set[str], *, ext_a: bool = False
) -> None:
    note = (
        f"Subset of {NOTO_FACE} 2.001 (GB 2312 + punctuation), CFF converted to "
        "TrueType outlines, for the Shenbao PDF renderer"
    )
    core = core_codepoints()
    if "core" in parts:
        for style, source in (("Regular", NOTO_REGULAR), ("Bold", NOTO_BOLD)):
            started = time.perf_counter()
            font = load_ttc_face(source, NOTO_FACE)
            subset_font(font, core, keep_layout=False)
            cff_to_glyf(font, max_err)
            scale_upem(font, upem)
            reorder_glyphs(font, priority_codepoints())
            rename(font, CJK_FAMILY, style, note)
            path = out_dir / f"ShenbaoSerifSC-{style}.woff2"
            save_woff2(font, path)
            report(path, font, started)
    if "ext" in parts:
        started = time.perf_counter()
        font = load_ttc_face(NOTO_REGULAR, NOTO_FACE)
        ext = ext_codepoints(font.getBestCmap(), core, ext_a=ext_a)
        subset_font(font, ext, keep_layout=False)
        cff_to_glyf(font, max_err)
        scale_upem(font, upem)
        ext_note = note.replace("GB 2312 + punctuation", "CJK Unified Ideographs not in GB 2312")
        rename(font, CJK_EXT_FAMILY, "Regular", ext_note)
        path = out_dir / "ShenbaoSerifSCExt-Regular.woff2"
        save_woff2(font, path)
        report(path, font, started)


def build_latin(out_dir: Path) -> None:
    note = "Subset of Liberation Serif 2 (Latin-1 + Latin Extended-A) for Shenbao"
    for style in ("Regular", "Bold"):
        started = time.perf_counter()
        source = LIBERATION_DIR / f"LiberationSerif-{style}.ttf"
        font = TTFont(str(source), recalcTimestamp=False)
        subset_font(font, latin_codepoints(), keep_layout=True)
        rename(font, LATIN_FAMILY, style, note)
        path = out_dir / f"ShenbaoSerifLatin-{style}.woff2"
        save_woff2(font, path)
        report(path, font, started)


def report(path: Path, font: TTFont, started: float) -> None:
    size = path.stat().st_size
    glyphs = font["maxp"].numGlyphs
    elapsed = time.perf_counter() - started
    print(f"{path.name:40} {glyphs:6d} glyphs {size / 1024:8.0f} KB  ({elapsed:.0f} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder")
    parser.add_argument(
        "--only",
        choices=["core", "ext", "latin"],
        action="append",
        help="build only these parts (repeatable); default: all",
    )
    parser.add_argument(
        "--max-err",
        type=float,
        default=4.0,
        help="cu2qu approximation error in source font units (1000/em); default 4.0",
    )
    parser.add_argument(
        "--upem",
        type=int,
        default=400,
        help="units per em of the CJK fonts (source: 1000); default 400",
    )
    parser.add_argument(
        "--ext-a",
        action="store_true",
        help="also put CJK Extension A into the Ext font (+1.2 MB; default: system fallback)",
    )
    args = parser.parse_args(argv)
    parts = set(args.only or ["core", "ext", "latin"])
    args.out.mkdir(parents=True, exist_ok=True)
    for source in (NOTO_REGULAR, NOTO_BOLD, LIBERATION_DIR):
        if not source.exists():
            print(f"missing {source}: apt-get install fonts-noto-cjk fonts-liberation2")
            return 1
    if parts & {"core", "ext"}:
        build_cjk(args.out, args.max_err, args.upem, parts, ext_a=args.ext_a)
    if "latin" in parts:
        build_latin(args.out)
    write_licences(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

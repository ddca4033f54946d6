"""State diagrams of a definition as Mermaid text or Graphviz DOT (SVG via ``dot``)."""

from __future__ import annotations

import shutil
import subprocess

from .schema import Program


def to_mermaid(program: Program, lang: str = "zh") -> str:
    lines = ["stateDiagram-v2"]
    for s in program.states:
        lines.append(f"    {s.name}: {s.label.get(lang)}")
    lines.append(f"    [*] --> {program.initial}")
    for t in program.transitions:
        for src in t.source:
            lines.append(f"    {src} --> {t.dest}: {t.label.get(lang)}")
    for s in program.states:
        if s.terminal:
            lines.append(f"    {s.name} --> [*]")
    return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(program: Program, lang: str = "zh", public: bool = False) -> str:
    font = "Noto Sans CJK SC"
    lines = [
        "digraph workflow {",
        f'  graph [rankdir=LR, fontname={_q(font)}, bgcolor="transparent"];',
        f'  node [shape=box, style="rounded,filled", fillcolor="#f5f7fb", fontname={_q(font)}];',
        f"  edge [fontname={_q(font)}, fontsize=10];",
    ]
    for s in program.states:
        label = (s.public_label if public else s.label).get(lang)
        shape = ", peripheries=2" if s.terminal else ""
        lines.append(f"  {s.name} [label={_q(label)}{shape}];")
    for t in program.transitions:
        for src in t.source:
            lines.append(f"  {src} -> {t.dest} [label={_q(t.label.get(lang))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_svg(program: Program, lang: str = "zh", public: bool = False) -> str:
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError("graphviz 'dot' is not installed (apt-get install graphviz)")
    result = subprocess.run(
        [dot, "-Tsvg"],
        input=to_dot(program, lang, public).encode(),
        capture_output=True,
        timeout=30,
        check=True,
    )
    return result.stdout.decode("utf-8")

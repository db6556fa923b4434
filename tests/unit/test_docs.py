"""The docs stay true to the tree: the architecture's module table lists exactly lib/'s modules,
relative links lead to files (and headings) that exist, and nothing cites the shared/ folder,
which is not part of the repository."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "lib"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
KINDS = {"pure", "edge", "thread", "wiring"}

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def _holds_code(path: Path) -> bool:
    """An __init__.py with nothing but a docstring is not a module worth a row."""
    body = ast.parse(path.read_text()).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    return bool(body)


def lib_modules() -> set[str]:
    return {p.relative_to(LIB).as_posix() for p in LIB.rglob("*.py")
            if "__pycache__" not in p.parts and (p.name != "__init__.py" or _holds_code(p))}


def module_table(text: str) -> list[tuple[str, str]]:
    """(module, kind) rows of the table whose header starts with ``| module | kind |``."""
    rows, inside = [], False
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if cells is None:
            if inside:
                break
            continue
        if not inside:
            inside = cells[:2] == ["module", "kind"]
            continue
        if set(cells[0]) <= set("-: "):
            continue
        rows.append((cells[0].strip("`"), cells[1]))
    return rows


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}


def test_module_table_lists_exactly_the_modules_of_lib():
    rows = module_table((ROOT / "docs" / "architecture.md").read_text())
    listed = [name for name, _ in rows]
    assert rows, "docs/architecture.md has no '| module | kind | job |' table"
    twice = sorted({n for n in listed if listed.count(n) > 1})
    assert not twice, f"listed twice in docs/architecture.md: {twice}"
    actual = lib_modules()
    missing, extra = sorted(actual - set(listed)), sorted(set(listed) - actual)
    assert not missing, f"add to docs/architecture.md's module table: {missing}"
    assert not extra, f"listed in docs/architecture.md but not in lib/: {extra}"
    odd = {name: kind for name, kind in rows if kind not in KINDS}
    assert not odd, f"kind must be one of {sorted(KINDS)}: {odd}"


def test_relative_links_lead_to_existing_files_and_headings():
    broken = []
    for doc in DOCS:
        for target in _LINK.findall(_FENCE.sub("", doc.read_text())):
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):
                continue                       # http:, https:, mailto:
            file_part, _, anchor = target.partition("#")
            dest = (doc.parent / file_part).resolve() if file_part else doc
            if not dest.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_no_doc_cites_the_shared_folder():
    cites = [f"{doc.relative_to(ROOT)}:{n}: {line.strip()}"
             for doc in DOCS
             for n, line in enumerate(doc.read_text().splitlines(), 1)
             if re.search(r"(?<![\w.-])shared/", line)]
    assert not cites, ("shared/ is not in the repository; cite docs/ instead:\n" + "\n".join(cites))

"""lib/ is the import package sinker_lib (pyproject.toml package-dir), so nothing imports it as
`lib`: in a checkout that name still resolves, and would load a second copy of every module (a
second SinkerError class, a second metrics registry), while an installed sinker has no `lib`."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BY_FOLDER_NAME = re.compile(r"\s*(from\s+lib(\.|\s+import\b)|import\s+lib\b)")


def test_nothing_imports_lib_by_its_folder_name():
    files = [ROOT / "sinker.py", *(p for d in ("lib", "tests", "bench") for p in (ROOT / d).rglob("*.py"))]
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in files
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if BY_FOLDER_NAME.match(line)]
    assert not found, "import these as sinker_lib, e.g. `from sinker_lib.config import ...`:\n" + "\n".join(found)


def test_the_checkout_lib_is_the_package_sinker_lib():
    import sinker_lib
    import sinker_lib.config
    assert Path(sinker_lib.__file__).resolve() == ROOT / "lib" / "__init__.py"
    assert Path(sinker_lib.config.__file__).resolve() == ROOT / "lib" / "config.py"

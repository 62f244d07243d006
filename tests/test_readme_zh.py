"""README.zh-CN.md stays in step with README.md: each links to the other, and each leads into
the documentation in its own language, page for page the same. (The same Quick start in both:
tests/test_quickstart.py; the two languages naming the same options, reasons and errcodes over
the whole documentation: tests/test_docs.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from test_readme import READMES, links

ROOT = Path(__file__).resolve().parent.parent
EN = (ROOT / "README.md").read_text("utf-8")
ZH = (ROOT / "README.zh-CN.md").read_text("utf-8")


def test_the_readmes_link_to_each_other():
    assert "中文文档: [README.zh-CN.md](README.zh-CN.md)" in EN.split("\n## ")[0]
    assert "English: [README.md](README.md)" in ZH.split("\n## ")[0]


def documentation_pages(readme: str) -> set[str]:
    """The pages of the documentation ``readme`` links to, relative to its language's folder;
    a page in another folder keeps its full path."""
    own = f"{READMES[readme]}/"
    return {
        target.split("#")[0].removeprefix(own)
        for target in links(readme)
        if target.startswith("docs/")
    }


@pytest.mark.parametrize("readme", READMES)
def test_each_readme_leads_into_the_documentation_in_its_language(readme):
    """Its language's home page and pages; of the other language's, only the home page (the
    link for a reader of the other language)."""
    pages = documentation_pages(readme)
    assert "index.md" in pages
    other = next(folder for name, folder in READMES.items() if name != readme)
    assert {page for page in pages if page.startswith("docs/")} == {f"{other}/index.md"}


def test_both_readmes_link_the_same_pages():
    en, zh = documentation_pages("README.md"), documentation_pages("README.zh-CN.md")
    assert {page for page in en if not page.startswith("docs/")} == {
        page for page in zh if not page.startswith("docs/")
    }

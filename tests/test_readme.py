"""The READMEs, front doors of at most 300 lines: their Python code blocks, extracted from
README.md and README.zh-CN.md and run, so that a snippet that stops working fails here (as
tests/_blocks.py runs them: each alone, with ``WECHAT_APPID`` and ``WECHAT_SECRET`` set, then its
``app`` through its lifespan and a ``GET /``); and their links, each to a file of this repository
(the documentation's pages under docs/en/ and docs/zh/) or a heading of the README itself, with
no web address but this machine's.

The Quick start is also run as a new user runs it, in a fresh virtual environment:
tests/test_quickstart.py. The documentation's own checks are in tests/test_docs.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from _blocks import Block, markdown_blocks, run_block

ROOT = Path(__file__).resolve().parent.parent
#: Each README and the folder of the documentation in its language.
READMES = {"README.md": "docs/en", "README.zh-CN.md": "docs/zh"}
MAX_LINES = 300

BLOCKS = [(readme, block) for readme in READMES for block in markdown_blocks(ROOT / readme)]


@pytest.mark.parametrize("readme", READMES)
def test_the_readme_has_blocks_and_skips_none(readme):
    """The Quick start's code at least; every block a front door shows runs."""
    blocks = [block for name, block in BLOCKS if name == readme]
    assert blocks
    assert not [block.line for block in blocks if block.skip]


@pytest.mark.parametrize(
    ("readme", "block"), BLOCKS, ids=[f"{readme}:{block.line}" for readme, block in BLOCKS]
)
def test_readme_block_runs(readme: str, block: Block, tmp_path: Path) -> None:
    if block.skip:
        pytest.skip(block.skip)
    proc = run_block(block, readme, tmp_path)
    assert proc.returncode == 0, f"{readme}:{block.line} failed:\n{block.source}\n{proc.stderr}"


# --- the front door: short, and its links lead somewhere ----------------------------------------

LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target)
AUTOLINK = re.compile(r"<(https?://[^>\s]+)>")  # <http://...>
URL = re.compile(r"https?://[^\s)>`'\"]+")
LOOPBACK = re.compile(r"https?://(127\.0\.0\.1|localhost)([:/]|$)")


def prose(text: str) -> str:
    """The README without its fenced blocks (links in code are not links)."""
    return re.sub(r"^ *```.*?^ *```$", "", text, flags=re.S | re.M)


def anchor(heading: str) -> str:
    """A heading's anchor as code hosts make it: lower case, spaces as hyphens, punctuation
    out (CJK kept)."""
    words = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return words.replace(" ", "-")


def links(readme: str) -> list[str]:
    text = prose((ROOT / readme).read_text("utf-8"))
    return LINK.findall(text) + AUTOLINK.findall(text)


@pytest.mark.parametrize("readme", READMES)
def test_the_readme_is_a_front_door(readme):
    lines = (ROOT / readme).read_text("utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"{readme} has {len(lines)} lines (at most {MAX_LINES})"


@pytest.mark.parametrize("readme", READMES)
def test_every_link_resolves(readme):
    """A relative link names a file of this repository (a page of the documentation: it reads
    well on a code host as it is, and ``mkdocs serve`` serves it); ``#anchor`` a heading of the
    README."""
    text = (ROOT / readme).read_text("utf-8")
    headings = {anchor(h) for h in re.findall(r"^#+ (.+)$", prose(text), re.M)}
    found = links(readme)
    assert found
    for target in found:
        if URL.match(target):
            continue  # the next test
        path, _, fragment = target.partition("#")
        if path:
            assert (ROOT / path).exists(), f"{readme} links to {target}, which does not exist"
        else:
            assert fragment in headings, f"{readme} links to {target}, no such heading"


@pytest.mark.parametrize("readme", READMES)
def test_no_web_address_but_this_machines(readme):
    """The documentation has no web address of its own: a README names none (the servers it
    tells you to start listen on 127.0.0.1)."""
    text = (ROOT / readme).read_text("utf-8")
    addresses = set(URL.findall(text))
    assert addresses, readme
    assert {url for url in addresses if not LOOPBACK.match(url)} == set()

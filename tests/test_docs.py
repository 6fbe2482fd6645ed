"""Every relative link and image in README.md and docs/*.md resolves to a file, and every
#anchor to a heading of the file it points into (GitHub's heading slugs)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", text, flags=re.M)}


def links(path: Path):
    for m in LINK.finditer(_prose(path.read_text(encoding="utf-8"))):
        target = m.group(1)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            yield target


def test_slug_follows_github():
    assert slug("The JEM baseline (`method=jem`)") == "the-jem-baseline-methodjem"
    assert slug("Set-up: two commands") == "set-up-two-commands"


@pytest.mark.parametrize("doc", DOCS, ids=[p.relative_to(ROOT).as_posix() for p in DOCS])
def test_relative_links_resolve(doc):
    bad = []
    for target in links(doc):
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not bad, f"{doc.name}: " + "; ".join(bad)


def test_readme_is_short_and_shows_the_landscape():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text) <= 6500, f"README.md has {len(text)} characters"
    shown = [t for t in links(ROOT / "README.md") if "landscape" in t and t.endswith(".png")]
    assert shown and (ROOT / shown[0]).is_file()
    assert "dualat landscape" in text

"""The operator docs: every relative link (and #anchor) they make leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.service.conftest import REPO

DOCS = [REPO / "docs" / n for n in ("INSTALL.md", "CREDENTIALS.md", "SERVICE.md",
                                    "TROUBLESHOOTING.md")]


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as dashes."""
    out = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            out.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text)))
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_links_lead_somewhere(doc: Path) -> None:
    for target in re.findall(r"\]\(([^)]+)\)", doc.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        assert path.exists(), f"{doc.name}: {target} does not exist"
        if anchor:
            assert anchor in anchors(path), f"{doc.name}: no heading #{anchor} in {file}"

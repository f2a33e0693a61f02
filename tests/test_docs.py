"""The README is the front door and the guides in docs/ hold the detail (issue 16): the README stays
short, links every guide, names every make verb; no relative link is dead; every `make <verb>` shown
is a target; the Python version said is the one pyproject.toml requires.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from tests.helpers import REPO

README = REPO / "README.md"
GUIDES = sorted((REPO / "docs").glob("*.md"))
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
MAKE_VERB = re.compile(r"(?:^|[`;&|(]|\n)\s*make ([a-z][a-z0-9-]*)")  # make as a command, not a word


def relative_links(page: Path) -> list[str]:
    """Markdown link targets of a page that point into the repository (no scheme, no mail)."""
    return [t for t in LINK.findall(page.read_text()) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.*?)\s*$", CODE.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def dead_links(page: Path) -> list[str]:
    dead = []
    for target in relative_links(page):
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (fragment and file.suffix == ".md" and fragment not in anchors(file)):
            dead.append(f"{page.relative_to(REPO)}: ({target})")
    return dead


def make_targets() -> set[str]:
    phony = re.search(r"^\.PHONY:(.*)$", (REPO / "Makefile").read_text(), re.M)
    assert phony, "Makefile has no .PHONY line"
    return set(phony.group(1).split())


def test_the_readme_is_short_and_links_every_guide():
    lines = README.read_text().splitlines()
    assert len(lines) < 150, f"README.md has {len(lines)} lines; move detail into a guide in docs/"
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in relative_links(README)}
    unlinked = [g.name for g in GUIDES if g.resolve() not in linked]
    assert GUIDES and not unlinked, f"guides not linked from README.md: {unlinked}"


def test_no_relative_link_in_the_readme_or_a_guide_is_dead():
    dead = [d for page in (README, *GUIDES) for d in dead_links(page)]
    assert not dead, "dead relative links:\n" + "\n".join(dead)


def test_the_readme_names_every_make_verb_and_the_docs_only_real_ones():
    targets = make_targets()
    readme = README.read_text()
    unnamed = sorted(t for t in targets - {"help"} if f"`{t}`" not in readme and f"make {t}" not in readme)
    assert not unnamed, f"make verbs the README does not name: {unnamed}"
    shown = {
        (page.name, verb)
        for page in (README, *GUIDES)
        for span in CODE.findall(page.read_text())
        for verb in MAKE_VERB.findall(span)
    }
    unknown = sorted(f"{page}: make {verb}" for page, verb in shown if verb not in targets)
    assert not unknown, "commands that are not Makefile targets:\n" + "\n".join(unknown)


def test_the_python_version_said_is_the_one_required():
    required = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    version = re.fullmatch(r">=\s*(3\.\d+)", required)
    assert version, required
    said = set(re.findall(r"Python (3\.\d+)\+", " ".join(p.read_text() for p in (README, *GUIDES))))
    assert said == {version.group(1)}, f"docs say Python {sorted(said)}+, pyproject.toml requires {required}"

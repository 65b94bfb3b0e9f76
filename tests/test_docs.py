"""The documentation stays true to the repository: its relative links resolve, the config files and
profiles its commands name exist, the README stays short and keeps CI's test command, every page
under docs/ ends in a command, and `snakemake --report` opens with a description of the study."""

from __future__ import annotations

import re
import shlex
import warnings
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
REPORT_TEXT = ROOT / "workflow" / "report" / "workflow.rst"

# Pages written by hand, not published study folders or notes: each ends in a command.
PAGES = sorted(p for p in DOCS.glob("*.md") if p.name != "development-notes.md")
# Every Markdown file of the documentation (docs/results/*/README.md included).
MARKDOWN = [README, *sorted(DOCS.rglob("*.md"))]

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def prose(text: str) -> str:
    """`text` without its fenced code blocks and inline code spans (links there are not links)."""
    text = FENCE.sub("", text)
    return re.sub(r"`[^`\n]*`", "", text)


def links(text: str) -> list[str]:
    return LINK.findall(prose(text))


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced code block."""
    return [(m[1].strip(), m[2]) for m in FENCE.finditer(text)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    h = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    h = re.sub(r"[^\w\- ]", "", h)
    return h.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", FENCE.sub("", path.read_text()), re.M):
        s = slug(m[1])
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


def broken_links(md: Path) -> list[str]:
    bad = []
    for target in links(md.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            bad.append(f"{rel(md)}: {target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{rel(md)}: {target}: no heading #{anchor} in {rel(dest)}")
    return bad


def written_in(body: str) -> set[str]:
    """Files a code block writes itself (`... > my.yaml`), so its later commands may name them."""
    return set(re.findall(r">\s*([\w./-]+)", body))


def named_files(body: str) -> list[tuple[str, str]]:
    """(option, value) for each --configfile (every file after it), --config FILE.yaml and --profile
    in a shell code block."""
    out = []
    for line in body.replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0]
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        for i, w in enumerate(words):
            if w == "--configfile":
                for v in words[i + 1:]:
                    if v.startswith("-") or v in ("&&", "||", ";", "|"):
                        break
                    out.append((w, v))
            elif w in ("--config", "--profile") and i + 1 < len(words):
                v = words[i + 1]
                if w == "--profile" or v.endswith((".yaml", ".yml")):
                    out.append((w, v))
            elif w.startswith(("--configfile=", "--profile=")):
                out.append(tuple(w.split("=", 1)))
    return out


def missing_files(md: Path) -> list[str]:
    bad = []
    for lang, body in blocks(md.read_text()):
        if lang not in ("bash", "sh", "shell", "console", ""):
            continue
        made = written_in(body)
        for option, value in named_files(body):
            if value in made or "/path/to/" in value or value.isupper():  # written above, or a placeholder
                continue
            if not (ROOT / value).exists():
                bad.append(f"{rel(md)}: {option} {value}: no such file or folder")
    return bad


# --- links -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("md", MARKDOWN, ids=rel)
def test_every_relative_link_resolves(md):
    assert broken_links(md) == []


def test_a_broken_link_is_found(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# A heading `x`\n\n## Two words\n")
    page.write_text("[ok](there.md) [ok](there.md#a-heading-x) [ok](there.md#two-words) [web](https://x.org/y)\n"
                    "`[not a link](nowhere.md)` [gone](nowhere.md) [bad anchor](there.md#nope) "
                    "![image](missing.png)\n```\n[in code](nowhere2.md)\n```\n")
    bad = broken_links(page)
    assert len(bad) == 3 and "nowhere.md" in bad[0] and "#nope" in bad[1] and "missing.png" in bad[2], bad


def test_readme_links_reach_every_page():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(README.read_text())}
    assert [rel(p) for p in PAGES if p.resolve() not in linked] == []


# --- config files and profiles named by commands -------------------------------------------------------

@pytest.mark.parametrize("md", [README, *PAGES, ROOT / "config" / "README.md", ROOT / "workflow" / "README.md"], ids=rel)
def test_every_config_file_and_profile_a_command_names_exists(md):
    assert missing_files(md) == []


def test_a_missing_config_file_is_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```bash\nprintf 'x: 1\\n' > my.yaml\n"
                    "snakemake -n --configfile config/demo.yaml my.yaml config/nope.yaml --cores 1\n"
                    "snakemake --profile profiles/nowhere && snakemake --config other.yml\n"
                    "snakemake --configfile config/cpu.yaml /path/to/fgnet.yaml  # --profile profiles/in-comment\n```\n")
    bad = [b.split(": ", 1)[1] for b in missing_files(page)]
    assert bad == ["--configfile config/nope.yaml: no such file or folder",
                   "--profile profiles/nowhere: no such file or folder",
                   "--config other.yml: no such file or folder"], bad


def test_config_files_the_pages_name_are_valid_yaml():
    for md in [README, *PAGES]:
        for _, body in blocks(md.read_text()):
            for option, value in named_files(body):
                if option == "--configfile" and (ROOT / value).is_file():
                    assert isinstance(yaml.safe_load((ROOT / value).read_text()), dict), (rel(md), value)


# --- the README ----------------------------------------------------------------------------------------

def test_readme_is_read_in_five_minutes():
    n = len(README.read_text().splitlines())
    assert n <= 250, f"README.md has {n} lines; move the rest into a page under docs/"


def test_readme_gives_the_test_command_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    command = next(line for line in ci.splitlines() if "pytest" in line and not line.startswith("#"))
    command = command.replace("pip install -q ", "pip install ")  # CI only quietens pip
    assert ("```bash\n" + command + "\n```") in README.read_text()
    demo = ("python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[workflow,weights]' && "
            "snakemake --cores 4 --resources gpu=1 --configfile config/demo.yaml")
    assert ("```bash\n" + demo + "\n```") in README.read_text()


# --- every page ends in a command ----------------------------------------------------------------------

def ends_in_command(text: str) -> bool:
    text = text.rstrip()
    last = list(FENCE.finditer(text + "\n"))
    return bool(last) and last[-1].end() >= len(text) and last[-1][1].strip() == "bash" and last[-1][2].strip() != ""


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_page_ends_in_a_command(page):
    assert ends_in_command(page.read_text()), f"{rel(page)} does not end in a ```bash block"


def test_a_page_without_a_final_command_is_found():
    assert ends_in_command("# T\n\ntext\n\n```bash\nls\n```\n")
    assert not ends_in_command("# T\n\n```bash\nls\n```\n\nmore text\n")
    assert not ends_in_command("# T\n\n```python\nprint(1)\n```\n")
    assert not ends_in_command("# T\n\n```bash\n```\n")


def test_docs_has_the_pages_the_readme_promises():
    names = {p.name for p in PAGES}
    assert {"configuration.md", "losses.md", "networks.md", "own-data.md", "protocols.md", "cluster.md",
            "outputs.md", "speed.md"} <= names


# --- the report's description ----------------------------------------------------------------------------

def test_snakefile_declares_the_report_description():
    snakefile = (ROOT / "Snakefile").read_text()
    m = re.search(r'^report:\s*"([^"]+)"', snakefile, re.M)
    assert m, "the Snakefile declares no top-level `report:` description"
    assert (ROOT / m[1]).resolve() == REPORT_TEXT.resolve() and REPORT_TEXT.is_file()


def render_report_text(config: dict) -> str:
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # as snakemake --report renders it

    class Snakemake:
        pass

    Snakemake.config = config
    return env.from_string(REPORT_TEXT.read_text()).render(snakemake=Snakemake)


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "config").glob("*.yaml")))
def test_report_opens_with_what_the_study_is(name):
    config = yaml.safe_load((ROOT / "config" / name).read_text())
    text = render_report_text(config)
    assert text.startswith("What this study is\n=================="), text[:200]
    head = text.split("How to read the tables", 1)
    assert len(head) == 2, "the description explains how to read the tables"
    for part in ("**Data.**", "**Protocol.**", "**Methods.**"):
        assert part in head[0]
    for table in ("summary.tsv", "comparison.tsv", "seeds.tsv", "folds.tsv"):
        assert table in head[1]
    losses = config.get("losses", [])
    for method in ([] if isinstance(losses, str) else losses) + list(config.get("baselines") or []):
        assert f"``{method}``" in head[0], method
    docutils = pytest.importorskip("docutils.core")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # writer_name, as snakemake passes it
        docutils.publish_parts(text, writer_name="html", settings_overrides={"halt_level": 2, "report_level": 5})


def test_report_describes_the_protocol_and_data_it_is_given():
    fgnet = render_report_text({"losses": ["mean_variance", "softmax"], "baselines": ["mean"]})
    assert "FG-NET" in fgnet and "1002 photos of 82 people" in fgnet and "Leave one person out" in fgnet
    kfold = render_report_text({"protocol": {"kfold": 5}, "data": {"source": "manifest", "manifest": "faces.tsv"},
                                "losses": ["l1"], "seeds": [0, 1]})
    assert "5 subject-disjoint folds" in kfold and "``faces.tsv``" in kfold and "FG-NET, the" not in kfold
    assert "once per training seed (0, 1)" in kfold
    split = render_report_text({"protocol": {"split_file": "splits.tsv"}, "subjects": [1, 2]})
    assert "``splits.tsv``" in split and "subjects 1, 2" in split

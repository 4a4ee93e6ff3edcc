"""The docs cannot drift from the tool (in the spirit of sqlite-utils' tests/test_docs.py).

- Every command and option the docs name exists: ``xml-extractor CMD ... --opt`` mentions (code
  blocks, with their continuation lines, and inline code), the README's command table, and
  backticked ``--opt`` in a section headed by a command (``## `run` ``, option tables included).
- Every command and every visible option that exists (walking the click group) is documented
  somewhere in README.md or docs/*.md, by the same kinds of mention. ``[run options]`` after a
  command stands for every option documented for ``run``; the options in usage.md's "Options
  every database command takes" section count for every command that has them.
- Figures the docs quote about the contract (tables, columns, attributes, enum values, enums) are
  the ones ``validate-contract`` prints for the packaged contract.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from xml_extractor.cli import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMON_SECTION = "Options every database command takes"
MENTION = re.compile(r"xml-extractor\s+([a-z][a-z-]*)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
HEADING = re.compile(r"^(#+)\s+(.*)$")
# performance.md quotes widths of measured tables ("70 columns") and per-document attribute
# counts, not the contract's figures
FIGURE_DOCS = [p for p in DOCS if p.name != "performance.md"]
FIGURE = re.compile(
    r"(?<![\w:.,~])~?(\d[\d,]*)\s+(tables|columns|attributes|enum\s+values|enums)\b"
)


def commands() -> dict[str, set[str]]:
    """Every command and its visible long options (--help and hidden options left out)."""
    out = {}
    for name, cmd in cli.commands.items():
        out[name] = {
            o
            for p in cmd.params
            if isinstance(p, click.Option) and not p.hidden
            for o in p.opts + p.secondary_opts
            if o.startswith("--") and o != "--help"
        }
    return out


def passes_run_options(cmd: str) -> bool:
    """launch hands its unprocessed arguments to run: run's options are valid after it."""
    return any(
        isinstance(p, click.Argument) and p.type is click.UNPROCESSED
        for p in cli.commands[cmd].params
    )


def mentions() -> list[tuple[str, str, set[str], bool]]:
    """(where, command, options, takes run options) for every place the docs name a command."""
    out: list[tuple[str, str, set[str], bool]] = []
    for path in DOCS:
        lines = path.read_text("utf-8").splitlines()
        section_cmd: str | None = None
        section_level = 0
        in_code = False
        table_is_commands = False
        for i, line in enumerate(lines):
            where = f"{path.name}:{i + 1}"
            if line.startswith("```"):
                in_code = not in_code
                continue
            h = HEADING.match(line) if not in_code else None
            if h:
                level, title = len(h.group(1)), h.group(2).strip()
                m = re.fullmatch(r"`([a-z][a-z-]*)`", title)
                if m:
                    section_cmd, section_level = m.group(1), level
                elif section_cmd and level <= section_level:
                    section_cmd = None
                continue
            for m in MENTION.finditer(line):
                rest = line[m.end() :]
                nxt = MENTION.search(rest)
                rest = rest[: nxt.start()] if nxt else rest
                rest = re.split(r"`|\s#\s|\s#$", rest)[0]
                j = i + 1
                while in_code and j < len(lines) and re.match(r"^\s+(\[|--)", lines[j]):
                    rest += " " + lines[j].split(" # ")[0]
                    j += 1
                out.append((where, m.group(1), set(OPTION.findall(rest)), "[run options]" in rest))
            if line.startswith("|"):
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                if cells and cells[0] in ("command", "`command`"):
                    table_is_commands = True
                    continue
                if table_is_commands and cells and not set(cells[0]) <= set("-: "):
                    for span in re.findall(r"`([^`]+)`", line.split(" | ")[0].replace("\\|", "/")):
                        words = span.split()
                        if words and re.fullmatch(r"[a-z][a-z-]*", words[0]):
                            out.append(
                                (
                                    where,
                                    words[0],
                                    set(OPTION.findall(span)),
                                    "[run options]" in span,
                                )
                            )
            else:
                table_is_commands = False
            if section_cmd and not in_code:
                for span in re.findall(r"`(--[a-z][a-z0-9-]*)[^`]*`", line):
                    out.append((where, section_cmd, {span}, False))
    return out


def common_options() -> set[str]:
    """The backticked options in usage.md's shared-options section."""
    text = (ROOT / "docs" / "usage.md").read_text("utf-8")
    m = re.search(rf"^##+ {COMMON_SECTION}\n(.*?)(?=^## )", text, re.M | re.S)
    assert m, f"docs/usage.md has no '## {COMMON_SECTION}' section"
    return set(re.findall(r"`(--[a-z][a-z0-9-]*)", m.group(1)))


def test_every_command_and_option_the_docs_name_exists() -> None:
    have = commands()
    problems = []
    for where, cmd, opts, _ in mentions():
        if cmd not in have:
            problems.append(f"{where}: no command {cmd!r}")
            continue
        valid = have[cmd] | (have["run"] if passes_run_options(cmd) else set())
        for o in sorted(opts - valid - {"--help", "--version"}):
            problems.append(f"{where}: {cmd} has no option {o}")
    for o in sorted(common_options() - set().union(*have.values())):
        problems.append(f"docs/usage.md '{COMMON_SECTION}': no command has {o}")
    assert not problems, "\n".join(problems)


def test_every_command_and_option_is_documented() -> None:
    have = commands()
    documented: dict[str, set[str]] = {}
    inherits: set[str] = set()
    for _, cmd, opts, run_options in mentions():
        documented.setdefault(cmd, set()).update(opts)
        if run_options:
            inherits.add(cmd)
    common = common_options()
    problems = []
    for cmd, opts in sorted(have.items()):
        if cmd not in documented:
            problems.append(
                f"command {cmd} is not documented (no `xml-extractor {cmd}` in README.md or docs/)"
            )
            continue
        doc = documented[cmd] | common
        if cmd in inherits:
            doc |= documented.get("run", set())
        for o in sorted(opts - doc):
            problems.append(f"{cmd} {o} is not documented")
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def figures() -> dict[str, int]:
    res = CliRunner().invoke(cli, ["validate-contract"])
    assert res.exit_code == 0, res.output
    m = re.search(
        r"(\d+) tables, (\d+) columns, (\d+) attributes, (\d+) enum values in (\d+) enums",
        res.output,
    )
    assert m, res.output
    return dict(
        zip(("tables", "columns", "attributes", "enum values", "enums"), map(int, m.groups()))
    )


def test_contract_figures_in_the_docs_are_validate_contracts(figures: dict[str, int]) -> None:
    problems = []
    quoted = 0
    for path in FIGURE_DOCS:
        text = path.read_text("utf-8")
        for m in FIGURE.finditer(text):  # across line breaks: prose is wrapped
            quoted += 1
            kind = " ".join(m.group(2).split())
            n = int(m.group(1).replace(",", ""))
            if m.group(0).startswith("~") or n != figures[kind]:
                line = text.count("\n", 0, m.start()) + 1
                problems.append(
                    f"{path.name}:{line}: '{' '.join(m.group(0).split())}' but validate-contract prints "
                    f"{figures[kind]} {kind} (quote the exact figure)"
                )
    assert quoted >= 3, "the docs should quote the contract's figures somewhere"
    assert not problems, "\n".join(problems)


def test_validate_contract_prints_the_figures_of_the_contract(figures: dict[str, int]) -> None:
    from xml_extractor.contract.loader import load_contract

    c = load_contract()
    assert figures["tables"] == len(c.tables) and figures["enums"] == len(c.enums)
    assert figures["columns"] == sum(len(t.stored_columns) for t in c.tables)
    assert figures["attributes"] > 100


def test_sections_the_code_points_to_exist() -> None:
    """Messages and help texts that send the reader to "docs/X.md, 'Section'" name a real heading
    (a refusal pointed to 'Changing the contract' when the heading said otherwise)."""
    ref = re.compile(r"docs/([a-z]+\.md), '([^']+)'")
    found = []
    for src in sorted((ROOT / "xml_extractor").rglob("*.py")):
        for doc, section in ref.findall(src.read_text(encoding="utf-8")):
            headings = {
                m.group(2).strip()
                for line in (ROOT / "docs" / doc).read_text(encoding="utf-8").splitlines()
                if (m := HEADING.match(line))
            }
            found.append((src.name, section))
            assert section in headings, (src.name, doc, section)
    assert len(found) >= 2, found


def test_the_readme_layout_names_every_file() -> None:
    """The README's layout is the tree: every module, SQL file and contract of the package and every
    script is named in it, so a newcomer's map has no blank."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout") :]
    files = [
        p
        for p in list((ROOT / "xml_extractor").rglob("*")) + list((ROOT / "scripts").glob("*"))
        if p.is_file()
        and p.suffix in (".py", ".sql", ".json", ".sh")
        and "__pycache__" not in p.parts
    ]
    missing = []
    for p in files:
        if p.parent.name == "sql" and p.suffix == ".sql":
            continue  # named by pattern (sql/*.sql, preflight_*.sql, ...)
        if p.name not in layout:
            missing.append(str(p.relative_to(ROOT)))
    assert not missing, f"README layout misses: {missing}"

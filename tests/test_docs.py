"""The manual stays true to the module: every function, flag, field and value the
module registers is in docs/reference.md; the README stays short, opens with its two
commands (the second one what .ci/run runs), and every relative link resolves."""

import re
import shlex
from pathlib import Path

import pytest

from tests.support.standin import ROOT, ArgDef, FunctionDef, ModuleCaller, ModuleDef, ObjectDef

README = ROOT / "README.md"
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference.md"
CI_RUN = ROOT / ".ci" / "run"
README_MAX_LINES = 260
MAIN_OBJECT = "Brokkr"

# Pages other branches are writing (issues 15, 16, 18, 19, 20). Links to them are
# allowed before they exist; once a page exists, its links and anchors are checked.
PENDING_PAGES = frozenset(
    {
        "docs/adopting.md",
        "docs/brokkr-versions.md",
        "docs/dependency-cache.md",
        "docs/lifecycle.md",
        "docs/registry.md",
        "docs/supply-chain.md",
        "docs/tags.md",
    }
)


def cli_name(name: str) -> str:
    """A registered name as the Dagger CLI spells it: `ui_path` is `ui-path`."""
    return name.strip("_").replace("_", "-")


# ---------------------------------------------------------------------------
# Markdown: headings, sections, links (fenced code left out)

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def prose_lines(text: str) -> list[tuple[str, bool]]:
    """Every line with whether it is outside fenced code."""
    out = []
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            out.append((line, False))
            continue
        out.append((line, not fenced))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line, prose in prose_lines(text):
        m = HEADING.match(line) if prose else None
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def sections(text: str) -> list[tuple[str, str]]:
    """(heading, body up to the next heading of the same or a higher level)."""
    lines = prose_lines(text)
    heads = [
        (i, len(m.group(1)), m.group(2))
        for i, (line, prose) in enumerate(lines)
        if prose and (m := HEADING.match(line))
    ]
    out = []
    for k, (i, level, title) in enumerate(heads):
        end = next((j for j, lv, _ in heads[k + 1 :] if lv <= level), len(lines))
        out.append((title, "\n".join(line for line, _ in lines[i + 1 : end])))
    return out


def links(text: str) -> list[str]:
    return [
        target
        for line, prose in prose_lines(text)
        if prose
        for target in LINK.findall(line)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)
    ]


# ---------------------------------------------------------------------------
# The reference against the module's typedefs


def section_key(obj: ObjectDef, fn: FunctionDef) -> str:
    """How the reference names a function in its heading: `build`, `Image.publish`."""
    name = cli_name(fn.name)
    return f"`{name}`" if obj.name == MAIN_OBJECT else f"`{obj.name}.{name}`"


def mentions_flag(body: str, arg: ArgDef) -> bool:
    flag = re.escape(f"--{cli_name(arg.name)}")
    return re.search(rf"{flag}(?![\w-])", body) is not None


def missing_from_reference(module: ModuleDef, reference: str) -> list[str]:
    """What the module registers that the reference does not document, one line each."""
    missing = []
    parts = sections(reference)
    for obj in module.objects.values():
        if obj.constructor:
            for arg in obj.constructor.args.values():
                if not mentions_flag(reference, arg):
                    missing.append(f"--{cli_name(arg.name)} (the {obj.name} constructor)")
        for field in obj.fields:
            if f"`{cli_name(field)}`" not in reference:
                missing.append(f"the field `{cli_name(field)}` of {obj.name}")
        for fn in obj.functions.values():
            key = section_key(obj, fn)
            bodies = [body for title, body in parts if key in title]
            if not bodies:
                missing.append(f"a section whose heading has {key}")
                continue
            for arg in fn.args.values():
                if not any(mentions_flag(body, arg) for body in bodies):
                    missing.append(f"--{cli_name(arg.name)} in the section of {key}")
    for enum, members in module.enums.items():
        for member in members:
            if f"`{member.lower()}`" not in reference:
                missing.append(f"the value `{member.lower()}` of {enum}")
    return missing


async def test_the_reference_documents_every_function_flag_field_and_value(
    brokkr: ModuleCaller,
):
    module = await brokkr.typedefs()
    missing = missing_from_reference(module, REFERENCE.read_text())
    assert not missing, (
        "docs/reference.md lacks (add a `### `name`` section per function, listing its "
        "flags in CLI spelling):\n" + "\n".join(missing)
    )


async def test_a_missing_flag_function_or_value_is_reported(brokkr: ModuleCaller):
    module = await brokkr.typedefs()
    text = REFERENCE.read_text()
    # The build section without --ui-path; --ui-path stays in other sections.
    body = next(b for t, b in sections(text) if t == "`build`")
    assert "--ui-path" in body
    without_flag = text.replace(body, body.replace("--ui-path", "--ui-folder"), 1)
    assert missing_from_reference(module, without_flag) == ["--ui-path in the section of `build`"]
    # --platform is not --platforms: a section that names only the list flag lacks it.
    no_platform = text.replace(body, re.sub(r"--platform(?![\w-])", "--platforms", body), 1)
    assert "--platform in the section of `build`" in missing_from_reference(module, no_platform)
    # No heading for list-tags at all.
    no_section = text.replace("### `list-tags`", "### tag listing")
    assert "a section whose heading has `list-tags`" in missing_from_reference(module, no_section)
    # A registered enum value nowhere in the text.
    no_value = text.replace("`cacher`", "the second stage")
    assert "the value `cacher` of Stage" in missing_from_reference(module, no_value)
    # A function registered on another object needs its own section too.
    no_image_publish = text.replace("### `Image.publish`", "### Pushing an image")
    assert "a section whose heading has `Image.publish`" in missing_from_reference(
        module, no_image_publish
    )


# ---------------------------------------------------------------------------
# The README


def test_the_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def first_block(text: str) -> tuple[list[str], list[str]]:
    """The prose before the first fenced block, and that block's command lines."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if FENCE.match(line))
    end = next(i for i in range(start + 1, len(lines)) if FENCE.match(lines[i]))
    before = [line for line in lines[:start] if line.strip()]
    commands = [
        line.strip()
        for line in lines[start + 1 : end]
        if line.strip() and not line.strip().startswith("#")
    ]
    return before, commands


def ci_run_commands() -> list[str]:
    return [
        line.strip()
        for line in CI_RUN.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_the_readme_opens_with_the_main_job_and_the_test_command():
    before, commands = first_block(README.read_text())
    assert before == ["# brokkr-ci"], "nothing but the title may come before the two commands"
    assert len(commands) == 2, commands
    main_job, tests = commands
    words = shlex.split(main_job)
    assert words[0] == "dagger"
    assert "call" in words
    assert words[-3:] == ["build", "--component", "broker"]
    # The second command is what .ci/run runs to install and test, ending with its
    # last command (the test command).
    run = ci_run_commands()
    steps = [step.strip() for step in tests.split("&&")]
    for step in steps:
        assert step in run, f"{step!r} is not a command of .ci/run"
    assert steps[-1] == run[-1] == ".venv/bin/python -m pytest"


def test_the_readme_names_the_in_checkout_call_and_the_contributor_script():
    text = README.read_text()
    assert "dagger call build --component broker" in text
    assert "bash .ci/run" in text
    assert "export-image --name brokkr-broker:dev" in text


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def broken_links(page: Path, text: str) -> list[str]:
    """The relative links of `text` (as if it were `page`) whose file or heading is missing."""
    broken = []
    for target in links(text):
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        rel = dest.relative_to(ROOT).as_posix() if dest.is_relative_to(ROOT) else str(dest)
        if not dest.exists():
            if rel not in PENDING_PAGES:
                broken.append(f"{target}: no such file")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            broken.append(f"{target}: no heading with that anchor in {rel}")
    return broken


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    broken = broken_links(page, page.read_text())
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_a_broken_link_or_anchor_is_reported():
    text = (
        "[ok](docs/reference.md#publish) [gone](docs/nowhere.md) "
        "[bad anchor](docs/reference.md#no-such-heading) [pending](docs/tags.md) "
        "[web](https://example.com/x.md) [here](#quick-start) [not here](#nothing)\n"
        "```\n[fenced](fenced.md)\n```\n"
    )
    assert broken_links(README, text) == [
        "docs/nowhere.md: no such file",
        "docs/reference.md#no-such-heading: no heading with that anchor in docs/reference.md",
        "#nothing: no heading with that anchor in README.md",
    ]
    assert "a-registry-on-your-own-machine---registry-service" in anchors(REFERENCE.read_text())
    assert anchors("### `Image.publish`\n## A b\n## A b\n") == {"imagepublish", "a-b", "a-b-1"}


# ---------------------------------------------------------------------------
# Troubleshooting quotes the messages the code really sends

CI = ROOT / "ci"
ELLIPSIS = "…"
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# Code spans that are commands or flags, not quoted messages.
NOT_MESSAGES = ("dagger", "stage", "--")


def message_templates() -> list[str]:
    """Every string literal in ci/, an f-string's fields written as the ellipsis."""
    import ast

    templates = []
    for path in sorted(CI.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                templates.append(node.value)
            elif isinstance(node, ast.JoinedStr):
                templates.append(
                    "".join(
                        v.value if isinstance(v, ast.Constant) else ELLIPSIS for v in node.values
                    )
                )
    return [re.sub(r"\s+", " ", t) for t in templates]


def quoted_messages(readme: str) -> list[str]:
    """The messages the Troubleshooting section quotes: code spans with an ellipsis."""
    body = next(b for t, b in sections(readme) if t == "Troubleshooting")
    prose = " ".join(line for line, outside in prose_lines(body) if outside)
    return [
        re.sub(r"\s+", " ", span)
        for _, span in CODE_SPAN.findall(prose)
        if ELLIPSIS in span and not span.startswith(NOT_MESSAGES)
    ]


def sent_by_the_code(quote: str, templates: list[str]) -> bool:
    """Whether some literal in ci/ reads as `quote`, an ellipsis standing for anything."""
    pieces = [re.escape(piece) for piece in quote.split(ELLIPSIS)]
    pattern = re.compile(".*?".join(pieces), re.DOTALL)
    return any(pattern.search(t) for t in templates)


def test_troubleshooting_quotes_messages_the_code_sends():
    templates = message_templates()
    quotes = quoted_messages(README.read_text())
    assert len(quotes) >= 6, quotes
    unsent = [q for q in quotes if not sent_by_the_code(q, templates)]
    assert not unsent, f"README's Troubleshooting quotes messages ci/ never sends: {unsent}"


def test_a_message_the_code_does_not_send_is_reported():
    templates = message_templates()
    assert sent_by_the_code("refusing to overwrite immutable tags that already exist: …", templates)
    assert not sent_by_the_code("refusing to overwrite mutable tags: …", templates)
    assert not sent_by_the_code("… did not compile: …", templates)
    # A quote is found in the section, inline and across lines, and commands are left out.
    readme = (
        "# x\n## Troubleshooting\n`a …` and ``b `…`\nc …`` and `dagger call …`\n"
        "```sh\n`d …`\n```\n## Next\n`e …`\n"
    )
    assert quoted_messages(readme) == ["a …", "b `…` c …"]


# ---------------------------------------------------------------------------
# The README's workflow excerpt is the workflow

WORKFLOW = ROOT / "workflows" / "brokkr" / "images.yml"
PINNED = re.compile(
    r"^\s*-?\s*(uses|version|BROKKR_CI_MODULE|queue|cancel-in-progress):\s*(.+?)\s*(#.*)?$"
)


def yaml_excerpt(readme: str) -> str:
    match = re.search(r"^```yaml\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no yaml block"
    return match.group(1)


def folded_args(text: str) -> list[str]:
    """The words of the first `args: >-` block that calls `publish` (the lines indented
    deeper than it); images.yml also has a `promote` step before it."""
    lines = text.splitlines()
    for start, line in enumerate(lines):
        if line.strip() != "args: >-":
            continue
        indent = len(line) - len(line.lstrip())
        block = []
        for following in lines[start + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            block.append(following)
        words = shlex.split("\n".join(block))
        if "publish" in words:
            return words
    return []


def excerpt_drift(excerpt: str, workflow: str) -> list[str]:
    """Pinned values and publish arguments of `excerpt` that `workflow` does not have."""
    drift = []
    for line in excerpt.splitlines():
        if m := PINNED.match(line):
            key, value = m.group(1), m.group(2)
            if not re.search(rf"^\s*-?\s*{key}:\s*{re.escape(value)}\s*(#.*)?$", workflow, re.M):
                drift.append(f"{key}: {value}")
    words = folded_args(excerpt)
    expected = folded_args(workflow)
    assert expected, "images.yml has no `args: >-` block"
    drift += [f"publish argument {w}" for w in words if w not in expected]
    return drift


def test_the_readme_workflow_excerpt_matches_the_workflow():
    excerpt = yaml_excerpt(README.read_text())
    assert "BROKKR_CI_MODULE" in excerpt
    assert "publish" in folded_args(excerpt)
    assert not excerpt_drift(excerpt, WORKFLOW.read_text())


def test_a_drifted_excerpt_is_reported():
    excerpt = yaml_excerpt(README.read_text())
    workflow = WORKFLOW.read_text()
    bumped = excerpt.replace('version: "v0.21.11"', 'version: "v0.21.12"')
    assert excerpt_drift(bumped, workflow) == ['version: "v0.21.12"']
    extra = excerpt.replace("--format json", "--format json --force")
    assert excerpt_drift(extra, workflow) == ["publish argument --force"]

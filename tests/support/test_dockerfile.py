"""The Dockerfile reader the parity test relies on (tests/support/dockerfile.py)."""

import pytest

from tests.support.dockerfile import (
    apt_packages,
    commands_of,
    dockerignore_sends,
    parse,
    parse_command,
    parse_env,
    shell_branches,
    shell_commands,
    substitute,
)

SAMPLE = """\
# syntax=docker/dockerfile:1.7
ARG TARGETARCH

FROM --platform=$BUILDPLATFORM rust:1 AS base
# a comment inside a stage
RUN --mount=type=cache,target=/a \\
    --mount=type=cache,target=/b \\
    cargo install x --locked
WORKDIR /app

FROM base AS tool-amd64
ENV A=1 \\
    B="two words"

FROM base AS tool-arm64
ENV A=2
ARG BUILDARCH

FROM tool-${TARGETARCH} AS build
COPY --from=base --chmod=0755 /x /y

FROM debian:bookworm-slim
EXPOSE 3000 8080/tcp
USER brokkr
ENTRYPOINT ["brokkr-broker"]
CMD npm start
"""


def test_stages_bases_names_and_platform():
    df = parse(SAMPLE)
    assert df.global_args == {"TARGETARCH": None}
    assert [(s.name, s.base) for s in df.stages] == [
        ("base", "rust:1"),
        ("tool-amd64", "base"),
        ("tool-arm64", "base"),
        ("build", "tool-${TARGETARCH}"),
        (None, "debian:bookworm-slim"),
    ]
    assert df.stage("base").platform == "$BUILDPLATFORM"
    assert df.final.platform is None


def test_continuations_comments_and_repeated_flags():
    run = parse(SAMPLE).stage("base").of("RUN")[0]
    assert run.value == "cargo install x --locked"
    assert run.flags["mount"] == ["type=cache,target=/a", "type=cache,target=/b"]
    assert run.line == 6


def test_env_args_copy_flags():
    df = parse(SAMPLE)
    assert df.stage("tool-amd64").env() == {"A": "1", "B": "two words"}
    assert df.stage("tool-arm64").args() == {"BUILDARCH": None}
    copy = df.stage("build").of("COPY")[0]
    assert copy.flag("from") == "base"
    assert copy.flag("chmod") == "0755"
    assert copy.value == "/x /y"
    assert df.stage("base").workdir() == "/app"


def test_final_stage_metadata():
    final = parse(SAMPLE).final
    assert final.exposed() == [3000, 8080]
    assert final.user() == "brokkr"
    assert final.entrypoint() == ["brokkr-broker"]
    assert final.cmd() == ["/bin/sh", "-c", "npm start"]


def test_lineage_follows_variable_stage_names():
    df = parse(SAMPLE)
    assert [s.name for s in df.lineage("build", {"TARGETARCH": "arm64"})] == [
        "base",
        "tool-arm64",
        "build",
    ]
    assert df.resolve("tool-${TARGETARCH}", {"TARGETARCH": "amd64"}).env()["A"] == "1"


def test_substitute_leaves_unknown_variables():
    assert substitute("a-$X-${Y}-$Z", {"X": "1", "Y": "2"}) == "a-1-2-$Z"


def test_parse_errors():
    with pytest.raises(ValueError, match="before the first FROM"):
        parse("RUN true\n")
    with pytest.raises(ValueError, match="cannot read FROM"):
        parse("FROM a b\n")
    with pytest.raises(ValueError, match="exec-form"):
        parse_command("[1, 2]")


def test_env_legacy_form():
    assert parse_env("NAME some value") == {"NAME": "some value"}


def test_shell_commands_split_on_operators_and_drop_keywords():
    script = 'if [ -f x ]; then npm ci; else npm install; fi && echo "a b" | cat'
    assert shell_commands(script) == [
        ["[", "-f", "x", "]"],
        ["npm", "ci"],
        ["npm", "install"],
        ["echo", "a b"],
        ["cat"],
    ]


def test_shell_branches_group_if_then_else():
    script = 'if [ "$A" = x ]; then a 1 && b; else c; fi'
    assert shell_branches(script) == [
        [["[", "$A", "=", "x", "]"]],
        [["a", "1"], ["b"]],
        [["c"]],
    ]
    assert shell_branches("a; b") == [[["a"], ["b"]]]


def test_apt_packages_drop_flags_and_keep_arch_qualifiers():
    script = (
        "apt-get update && apt-get install -y --no-install-recommends curl libpq-dev:arm64 "
        "&& rm -rf /var/lib/apt/lists/*"
    )
    assert apt_packages(script) == ["curl", "libpq-dev:arm64"]


def test_commands_of_picks_one_program():
    script = "cargo clean -p a && cargo build --release && cp x y"
    assert commands_of(script, "cargo") == [
        ["cargo", "clean", "-p", "a"],
        ["cargo", "build", "--release"],
    ]


IGNORE = """\
# everything but the workspace
*
!Cargo.toml
!crates
**/target
"""


def test_dockerignore_last_matching_rule_wins_and_parents_count():
    paths = [
        "Cargo.toml",
        "README.md",
        "docs/a/b.md",
        "crates/x/src/lib.rs",
        "crates/x/target/debug/y",
        "target/release/z",
        "crates.txt",
    ]
    assert dockerignore_sends(IGNORE, paths) == {"Cargo.toml", "crates/x/src/lib.rs"}


def test_dockerignore_globs_stay_within_one_element_and_root_is_anchored():
    text = "docs/*.md\n/build\n**/node_modules\n"
    paths = ["docs/a.md", "docs/sub/b.md", "build/x", "ui/build/y", "a/b/node_modules/c"]
    assert dockerignore_sends(text, paths) == {"docs/sub/b.md", "ui/build/y"}

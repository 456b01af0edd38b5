"""A small Dockerfile reader for the parity test (tests/build/test_dockerfiles.py).

It understands what `dockerfiles/` uses: parser directives and comments, line
continuations, global `ARG`s, stages (`FROM [--platform=…] image [AS name]`),
and per stage `ARG`, `ENV` (`K=V …` and legacy `K V`), `RUN`, `COPY`/`ADD`
(with their `--flag=value` options), `WORKDIR`, `EXPOSE`, `USER`,
`ENTRYPOINT` and `CMD` (exec and shell forms). `shell_commands` splits a shell
script (a `RUN` line or a Dagger `sh -c` exec) into simple commands, and
`apt_packages` pulls the package names out of its `apt-get install` commands,
so both sides of the parity test are read the same way.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

_FLAG = re.compile(r"^--([a-z-]+)(?:=(.*))?$")
_SHELL_KEYWORDS = frozenset({"if", "then", "else", "elif", "fi", "do", "done"})
_SEPARATORS = frozenset({"&&", "||", ";", "|", "&"})


@dataclass
class Instruction:
    """One instruction: its keyword, `--flags` (repeatable ones listed) and remaining text."""

    keyword: str
    flags: dict[str, list[str]]
    value: str
    line: int

    def flag(self, name: str) -> str | None:
        """The last value of `--name`, or `None`."""
        values = self.flags.get(name)
        return values[-1] if values else None


@dataclass
class Stage:
    """A build stage: `FROM base [AS name]` and its instructions."""

    base: str
    name: str | None
    platform: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        """This stage's instructions with `keyword` (upper case), in order."""
        return [i for i in self.instructions if i.keyword == keyword]

    def runs(self) -> list[str]:
        """The shell scripts of this stage's `RUN`s."""
        return [i.value for i in self.of("RUN")]

    def env(self) -> dict[str, str]:
        """Variables set by this stage's `ENV`s (later wins)."""
        env: dict[str, str] = {}
        for inst in self.of("ENV"):
            env.update(parse_env(inst.value))
        return env

    def args(self) -> dict[str, str | None]:
        """This stage's `ARG`s and their defaults."""
        return dict(parse_arg(i.value) for i in self.of("ARG"))

    def exposed(self) -> list[int]:
        """Ports of this stage's `EXPOSE`s (the protocol suffix dropped)."""
        return [int(p.split("/")[0]) for i in self.of("EXPOSE") for p in i.value.split()]

    def user(self) -> str | None:
        """The last `USER`, or `None`."""
        users = self.of("USER")
        return users[-1].value.strip() if users else None

    def workdir(self) -> str | None:
        """The last `WORKDIR`, or `None`."""
        dirs = self.of("WORKDIR")
        return dirs[-1].value.strip() if dirs else None

    def entrypoint(self) -> list[str] | None:
        """The last `ENTRYPOINT` as an argument list, or `None`."""
        found = self.of("ENTRYPOINT")
        return parse_command(found[-1].value) if found else None

    def cmd(self) -> list[str] | None:
        """The last `CMD` as an argument list, or `None`."""
        found = self.of("CMD")
        return parse_command(found[-1].value) if found else None


@dataclass
class Dockerfile:
    """A parsed Dockerfile: global `ARG`s (before the first `FROM`) and its stages."""

    global_args: dict[str, str | None]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        """The stage named `name`; `KeyError` if there is none."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    @property
    def final(self) -> Stage:
        """The last stage (what `docker build` produces without `--target`)."""
        return self.stages[-1]

    def resolve(self, name: str, variables: dict[str, str]) -> Stage:
        """The stage that `FROM name` reaches with `variables` substituted into stage names.

        Follows bases that are stages until a stage whose base is an image
        (`FROM toolchain-${TARGETARCH}` with `TARGETARCH=arm64` → `toolchain-arm64`).
        """
        return self.stage(substitute(name, variables))

    def lineage(self, name: str, variables: dict[str, str]) -> list[Stage]:
        """`name`'s stage and the stages it is built `FROM`, root first."""
        chain: list[Stage] = []
        current: str | None = substitute(name, variables)
        names = {s.name for s in self.stages}
        while current in names:
            stage = self.stage(current)
            chain.append(stage)
            current = substitute(stage.base, variables)
        chain.reverse()
        return chain


def substitute(text: str, variables: dict[str, str]) -> str:
    """Replace `$NAME` and `${NAME}` from `variables`; unknown names are left alone."""

    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return variables.get(name, match.group(0))

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", repl, text)


def logical_lines(text: str) -> list[tuple[int, str]]:
    """The instructions of `text` with continuations joined and comments dropped."""
    out: list[tuple[int, str]] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            continue
        if not buffer:
            if not stripped:
                continue
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1].rstrip())
            continue
        buffer.append(stripped)
        out.append((start, " ".join(part for part in buffer if part)))
        buffer = []
    if buffer:
        out.append((start, " ".join(part for part in buffer if part)))
    return out


def split_flags(rest: str) -> tuple[dict[str, list[str]], str]:
    """Leading `--name=value` options of an instruction and the text after them."""
    flags: dict[str, list[str]] = {}
    remaining = rest
    while remaining.startswith("--"):
        token, _, tail = remaining.partition(" ")
        match = _FLAG.match(token)
        if match is None:
            break
        flags.setdefault(match.group(1), []).append(match.group(2) or "")
        remaining = tail.lstrip()
    return flags, remaining


def parse_env(value: str) -> dict[str, str]:
    """`ENV K=V K2="v 2"` or the legacy `ENV K some value`."""
    tokens = shlex.split(value)
    if tokens and "=" not in tokens[0]:
        return {tokens[0]: value.split(None, 1)[1] if len(tokens) > 1 else ""}
    return dict(token.split("=", 1) for token in tokens)


def parse_arg(value: str) -> tuple[str, str | None]:
    """`ARG NAME[=default]`."""
    name, sep, default = value.strip().partition("=")
    return name, default if sep else None


def parse_command(value: str) -> list[str]:
    """`["a", "b"]` (exec form) or `a b` (shell form, as `/bin/sh -c` runs it)."""
    stripped = value.strip()
    if stripped.startswith("["):
        parsed = json.loads(stripped)
        if not isinstance(parsed, list) or not all(isinstance(a, str) for a in parsed):
            msg = f"not an exec-form argument list: {value!r}"
            raise ValueError(msg)
        return parsed
    return ["/bin/sh", "-c", stripped]


def parse(text: str) -> Dockerfile:
    """Parse a Dockerfile's text."""
    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for number, line in logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        flags, value = (
            split_flags(rest) if keyword in {"FROM", "RUN", "COPY", "ADD"} else ({}, rest)
        )
        if keyword == "FROM":
            parts = value.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            if len(parts) not in (1, 3) or (len(parts) == 3 and name is None):
                msg = f"line {number}: cannot read FROM {value!r}"
                raise ValueError(msg)
            platform = flags.get("platform", [None])[-1]
            stages.append(Stage(base=parts[0], name=name, platform=platform))
            continue
        if not stages:
            if keyword != "ARG":
                msg = f"line {number}: {keyword} before the first FROM"
                raise ValueError(msg)
            arg_name, default = parse_arg(value)
            global_args[arg_name] = default
            continue
        stages[-1].instructions.append(
            Instruction(keyword=keyword, flags=flags, value=value, line=number)
        )
    return Dockerfile(global_args=global_args, stages=stages)


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a shell script, split at `&&`, `||`, `;` and `|`.

    `if`/`then`/`else`/`fi` keywords are dropped, so both branches' commands
    are listed; quotes are removed as the shell would.
    """
    lexer = shlex.shlex(script, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands: list[list[str]] = []
    current: list[str] = []
    for token in lexer:
        if token in _SEPARATORS:
            if current:
                commands.append(current)
            current = []
            continue
        if not current and token in _SHELL_KEYWORDS:
            continue
        current.append(token)
    if current:
        commands.append(current)
    return commands


def apt_packages(script: str) -> list[str]:
    """Package names of every `apt-get install` in `script`, in order (flags dropped)."""
    packages: list[str] = []
    for command in shell_commands(script):
        if command[:2] == ["apt-get", "install"]:
            packages += [arg for arg in command[2:] if not arg.startswith("-")]
    return packages


def commands_of(script: str, program: str) -> list[list[str]]:
    """The commands of `script` that run `program` (e.g. every `cargo …`)."""
    return [c for c in shell_commands(script) if c and c[0] == program]


def shell_branches(script: str) -> list[list[list[str]]]:
    """`script`'s commands grouped by `if`/`then`/`else`/`fi`: condition, then, else, after.

    A script without `if` is one group. Empty groups are dropped, so
    `if C; then A; else B; fi` gives `[[C], [A], [B]]`.
    """
    lexer = shlex.shlex(script, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    groups: list[list[list[str]]] = [[]]
    current: list[str] = []
    for token in lexer:
        if token in _SEPARATORS:
            if current:
                groups[-1].append(current)
            current = []
            continue
        if not current and token in {"if", "then", "else", "elif", "fi"}:
            groups.append([])
            continue
        current.append(token)
    if current:
        groups[-1].append(current)
    return [g for g in groups if g]


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """The rules of a `.dockerignore`, in order: (re-include?, compiled pattern).

    As Docker reads them: comments and blank lines dropped, `!` re-includes,
    patterns are anchored at the context root (a leading `/` is the root),
    `*` and `?` stay within one path element, `**` spans any number of them.
    """
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:].strip() if negated else line
        pattern = pattern.strip("/")
        rules.append((negated, re.compile(_glob_regex(pattern))))
    return rules


def _glob_regex(pattern: str) -> str:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "^" + "".join(out) + "$"


def dockerignore_sends(text: str, paths: list[str]) -> set[str]:
    """Which of the context's file `paths` a `.dockerignore` of `text` lets into the build.

    A rule applies to a path when it matches the path or one of its parent
    directories; the last rule that applies decides.
    """
    rules = dockerignore_rules(text)
    sent = set()
    for path in paths:
        parts = path.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        ignored = False
        for negated, regex in rules:
            if any(regex.match(c) for c in candidates):
                ignored = not negated
        if not ignored:
            sent.add(path)
    return sent

"""A stand-in Dagger engine for the test suite.

No Dagger engine can run where these tests run, so this module serves the real
engine API schema (``tests/schema/schema-v0.21.8.types.graphqls``, or the file
``DAGGER_SCHEMA`` names) over HTTP on 127.0.0.1 with graphql-core, and the real
``dagger-io`` SDK talks to it through ``DAGGER_SESSION_PORT`` /
``DAGGER_SESSION_TOKEN`` exactly as it talks to an engine.

What it does with a query:

* validates it against the schema (an invalid query is an error, as in the
  engine) and records it (:attr:`StandInEngine.queries`);
* resolves every object-returning field to a :class:`Node` that remembers its
  parent, field name and arguments, with ID arguments turned back into the
  :class:`Node` they name, so a test can walk the build graph from any returned
  ID (:meth:`StandInEngine.node`);
* answers the few leaves that carry meaning: ``id``/``sync`` (a stable ID per
  call chain), ``defaultPlatform``, ``Container.platform``, ``Container.publish``
  (records a :class:`Push` and returns ``address@sha256:…``), ``Secret.plaintext``,
  ``Service.start`` and ``Service.endpoint`` of host services (see
  :func:`service_endpoint`),
  and the ``Directory``/``File`` reads (``exists``, ``entries``, ``glob``,
  ``contents``…) of directories loaded from the host, which it evaluates against
  the real files. Other leaves return the zero value of their type unless a test
  installs a handler (:meth:`StandInEngine.on`);
* can fail or slow down evaluation (:meth:`StandInEngine.fail_when`,
  :attr:`StandInEngine.delays`) the way a broken or slow build would.

Tests use it through the fixtures at the bottom: ``engine`` (a connected
stand-in, reset for each test), ``brokkr`` (calls module functions the way the
engine does, through ``dagger.mod.Module.get_result``) and ``fixture_source``
(the ID of the Brokkr-shaped fixture workspace loaded from the host).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.server
import json
import os
import posixpath
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import graphql
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_WORKSPACE = ROOT / "tests" / "fixtures" / "brokkr"
FIXTURE_V091 = ROOT / "tests" / "fixtures" / "brokkr-v091"
"""Brokkr as at v0.9.1 (df0be43): the trunk console, `embed-ui`, ui-slim with a `file:` SDK."""
SCHEMA_FILE = ROOT / "tests" / "schema" / "schema-v0.21.8.types.graphqls"
ENGINE_VERSION = "v0.21.8"

# Fields whose answer needs the engine to actually run something: a failure
# installed with `fail_when` surfaces there, as it would in a real engine.
EVALUATING = frozenset(
    {
        "sync",
        "stdout",
        "stderr",
        "combinedOutput",
        "exitCode",
        "publish",
        "export",
        "exportImage",
        "contents",
        "entries",
        "glob",
        "digest",
    }
)

# The four kinds of engine round-trip a module waits for (what `delays` simulates in the
# benchmarks and `serial_rounds` counts): a build's sync, an exec's output, a file read
# out of a built container, and a push. Reads of the host's files are none of them.
ROUND_TRIPS = frozenset({"sync", "stdout", "stderr", "combinedOutput", "publish"})
FILE_READS = frozenset({"contents", "digest", "size"})


def schema_path() -> Path:
    """Where the engine schema is read from: ``DAGGER_SCHEMA``, else the vendored copy."""
    if env := os.environ.get("DAGGER_SCHEMA"):
        return Path(env)
    return SCHEMA_FILE


# ---------------------------------------------------------------------------
# The build graph


@dataclasses.dataclass(eq=False)
class Node:
    """One object the API returned: ``parent.field(**args)`` of GraphQL type ``type_name``.

    ``parent`` is ``None`` for fields of ``Query``. ID arguments hold the
    :class:`Node` (or list of nodes) they named.
    """

    type_name: str
    field: str
    args: dict[str, Any]
    parent: Node | None
    id: str = ""
    _key: str = dataclasses.field(default="", repr=False)

    # -- walking the chain -------------------------------------------------
    def chain(self) -> list[Node]:
        """The calls from the root down to this node, in order."""
        out: list[Node] = []
        node: Node | None = self
        while node is not None:
            out.append(node)
            node = node.parent
        out.reverse()
        return out

    def calls(self, field: str) -> list[Node]:
        """Every call named ``field`` in this node's own chain, in order."""
        return [n for n in self.chain() if n.field == field]

    def last(self, field: str) -> Node | None:
        """The last call named ``field`` in this node's chain, if any."""
        found = self.calls(field)
        return found[-1] if found else None

    def first(self, field: str) -> Node:
        """The first call named ``field`` in the chain; fails the test if absent."""
        found = self.calls(field)
        if not found:
            msg = f"no {field!r} call in chain {self.describe()}"
            raise AssertionError(msg)
        return found[0]

    def execs(self) -> list[list[str]]:
        """The argument lists of every ``withExec`` in this node's chain."""
        return [list(n.args["args"]) for n in self.calls("withExec")]

    def env(self) -> dict[str, str]:
        """Environment variables set along the chain (later calls win)."""
        env: dict[str, str] = {}
        for n in self.chain():
            if n.field == "withEnvVariable":
                env[n.args["name"]] = n.args["value"]
            elif n.field == "withoutEnvVariable":
                env.pop(n.args["name"], None)
        return env

    def graph(self) -> list[Node]:
        """This node's chain plus, transitively, the chains of every node it references."""
        seen: dict[int, Node] = {}
        stack = [self]
        while stack:
            node = stack.pop()
            for n in node.chain():
                if id(n) in seen:
                    continue
                seen[id(n)] = n
                stack.extend(_nodes_in(n.args))
        return list(seen.values())

    def root_container(self) -> Node | None:
        """The ``Query.container`` call that starts this chain, if it is a container chain."""
        head = self.chain()[0]
        return head if head.field == "container" else None

    def platform(self, default: str) -> str:
        """The platform the container chain runs on (``container(platform:)``)."""
        head = self.root_container()
        if head is not None and head.args.get("platform"):
            return str(head.args["platform"])
        return default

    def base_image(self) -> str | None:
        """The address of the last ``from`` in this chain."""
        node = self.last("from")
        return None if node is None else str(node.args["address"])

    def describe(self) -> str:
        """A readable one-line rendering of the chain, for assertion messages."""
        parts = []
        for n in self.chain():
            args = ", ".join(f"{k}={_short(v)}" for k, v in n.args.items())
            parts.append(f"{n.field}({args})")
        return ".".join(parts)

    def key(self) -> str:
        """A digest of the call chain (with referenced chains); equal chains, equal keys."""
        if not self._key:
            parent = self.parent.key() if self.parent is not None else ""
            text = f"{parent}/{self.type_name}.{self.field}({_canon(self.args)})"
            self._key = hashlib.sha256(text.encode()).hexdigest()
        return self._key

    def __repr__(self) -> str:
        return f"<Node {self.type_name} {self.describe()}>"


def _nodes_in(value: Any) -> Iterator[Node]:
    if isinstance(value, Node):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _nodes_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from _nodes_in(v)


def _canon(value: Any) -> str:
    def enc(v: Any) -> Any:
        if isinstance(v, Node):
            return {"$node": v.key()}
        if isinstance(v, Mapping):
            return {k: enc(x) for k, x in sorted(v.items())}
        if isinstance(v, list):
            return [enc(x) for x in v]
        return v

    return json.dumps(enc(value), sort_keys=True)


def _short(value: Any) -> str:
    if isinstance(value, Node):
        return f"<{value.type_name}:{value.field}>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclasses.dataclass
class Push:
    """One ``Container.publish`` call the module made."""

    address: str
    container: Node
    variants: list[Node]
    digest: str
    registry_service: Node | None = None
    """The ``registryService`` argument: the Service node the push went through."""

    def platforms(self, default: str) -> list[str]:
        """Platforms of the pushed image (the container and its variants)."""
        return [n.platform(default) for n in [self.container, *self.variants]]

    def auth(self) -> list[Node]:
        """The ``withRegistryAuth`` calls in the pushed container's chain."""
        return self.container.calls("withRegistryAuth")


@dataclasses.dataclass
class Query:
    """One GraphQL request the SDK sent."""

    text: str
    variables: dict[str, Any]
    errors: list[str]
    valid: bool = True


Handler = Callable[["StandInEngine", Node | None, dict[str, Any]], Any]


# ---------------------------------------------------------------------------
# The engine


class StandInEngine:
    """Answers the Dagger API for tests, recording the build graph it is asked for."""

    def __init__(self, schema_file: Path) -> None:
        self.schema = graphql.build_schema(schema_file.read_text(), assume_valid_sdl=True)
        self.token = secrets.token_hex(16)
        self._lock = threading.RLock()
        self._introspection: dict[str, dict[str, Any]] = {}
        self._server: http.server.ThreadingHTTPServer | None = None
        self.reset()

    # -- state a test reads or sets -----------------------------------------
    def reset(self) -> None:
        """Forget everything recorded and every behaviour installed."""
        with self._lock:
            # IDs outlive a reset: a real engine's IDs encode their call chain, so an
            # ID the SDK cached in an earlier test (typedefs are cached) stays valid.
            self._by_id: dict[str, Node] = getattr(self, "_by_id", {})
            self._by_key: dict[str, str] = getattr(self, "_by_key", {})
            self.queries: list[Query] = []
            self.pushes: list[Push] = []
            self.evaluated: list[tuple[str, Node, float, float]] = []
            self.default_platform = "linux/amd64"
            self.env: dict[str, str] = {}
            self.delays: dict[str, float] = {}
            self.on_publish: Callable[[Push], str | None] | None = None
            # What `Container.file(path).contents()` answers, by path: a string, or a
            # function of the container node. The planner's recipe is derived from the
            # source it was given, as cargo-chef derives it (`cargo_chef_recipe`).
            self.container_files: dict[str, str | Callable[[Node], str]] = {
                "/app/recipe.json": cargo_chef_recipe
            }
            # What `Container.directory(path)` holds, by path: {relative path: bytes}, or a
            # function of the container node (e.g. the files trunk writes into dist/).
            self.container_dirs: dict[
                str, dict[str, bytes] | Callable[[Node], dict[str, bytes]]
            ] = {}
            self._handlers: dict[tuple[str, str], Handler] = {}
            self._failures: list[
                tuple[
                    Callable[[Node], bool],
                    str | Callable[[Node], str],
                    Callable[[Node], dict[str, Any]] | None,
                ]
            ] = []

    def reset_recordings(self) -> None:
        """Forget what was recorded (queries, pushes, evaluations); keep every behaviour."""
        with self._lock:
            self.queries = []
            self.pushes = []
            self.evaluated = []

    def on(self, type_name: str, field: str, handler: Handler) -> None:
        """Answer ``type_name.field`` with ``handler(engine, parent_node, args)``."""
        self._handlers[(type_name, field)] = handler

    def fail_when(
        self,
        predicate: Callable[[Node], bool],
        message: str | Callable[[Node], str],
        *,
        exec_error: Callable[[Node], tuple[int, str, str]] | None = None,
    ) -> None:
        """Fail evaluation of anything whose build graph has a node matching ``predicate``.

        With ``exec_error`` the failure is the engine's exec error (what the SDK
        raises as ``dagger.ExecError``): the matching ``withExec`` node's args are
        its command, and ``exec_error(node)`` gives ``(exit code, stdout, stderr)``.
        """
        extensions = None
        if exec_error is not None:

            def extensions(node: Node) -> dict[str, Any]:
                code, stdout, stderr = exec_error(node)
                cmd = list(node.args.get("args") or [])
                return {
                    "_type": "EXEC_ERROR",
                    "cmd": cmd,
                    "exitCode": code,
                    "stdout": stdout,
                    "stderr": stderr,
                }

        self._failures.append((predicate, message, extensions))

    def fail_exec(self, *args: str, exit_code: int = 1, stdout: str = "", stderr: str = "") -> None:
        """Make the ``withExec`` calls whose arguments start with ``args`` fail.

        Whatever is evaluated with such an exec in its build graph (``sync``, a
        file's ``contents``, ``publish``…) fails as a failing process fails in the
        engine: the error names the command and exit code, and the SDK raises
        ``dagger.ExecError`` with ``stdout``/``stderr``. Composing stays lazy, so
        nothing fails before evaluation. Example:
        ``engine.fail_exec("cargo", "build", exit_code=101, stderr="error[E0425]")``.
        """
        prefix = list(args)
        if not prefix:
            msg = "fail_exec needs the first arguments of the exec to fail"
            raise ValueError(msg)

        def chosen(node: Node) -> bool:
            return node.field == "withExec" and list(node.args["args"])[: len(prefix)] == prefix

        def message(node: Node) -> str:
            command = " ".join(node.args["args"])
            return f'process "{command}" did not complete successfully: exit code: {exit_code}'

        self.fail_when(chosen, message, exec_error=lambda _node: (exit_code, stdout, stderr))

    def node(self, id_: str) -> Node:
        """The node a returned ID names."""
        with self._lock:
            try:
                return self._by_id[id_]
            except KeyError:
                msg = f"the stand-in engine never returned the ID {id_!r}"
                raise AssertionError(msg) from None

    def sent_text(self) -> str:
        """Every query and variable the SDK sent, as one string (for leak checks)."""
        return "\n".join(q.text + json.dumps(q.variables) for q in self.queries)

    # -- the HTTP side --------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "stand-in engine not started"
        return int(self._server.server_address[1])

    def start(self) -> None:
        engine = self

        class _Handler(http.server.BaseHTTPRequestHandler):
            # Keep-alive, as the engine's server does: the SDK's connection pool reuses
            # connections, and a server closing them after each answer makes it resend.
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                expected = "Basic " + base64.b64encode(f"{engine.token}:".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.end_headers()
                    return
                length = int(self.headers.get("Content-Length", "0"))
                payload = json.loads(self.rfile.read(length) or b"{}")
                body = json.dumps(engine.execute(payload)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class _Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            # The SDK opens many connections at once (concurrent builds and pushes);
            # the default listen backlog of 5 drops some, and the client's SYN is
            # retried only a second later.
            request_queue_size = 128

        self._server = _Server(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- executing a query ------------------------------------------------------
    def execute(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        text = str(payload.get("query", ""))
        variables = dict(payload.get("variables") or {})
        if "__schema" in text and text in self._introspection:
            return self._introspection[text]
        try:
            document = graphql.parse(text)
        except graphql.GraphQLError as e:
            return self._record(text, variables, {"errors": [e.formatted]}, valid=False)
        errors = graphql.validate(self.schema, document)
        if errors:
            out = {"errors": [e.formatted for e in errors]}
            return self._record(text, variables, out, valid=False)
        result = graphql.execute_sync(
            self.schema,
            document,
            variable_values=variables,
            operation_name=payload.get("operationName"),
            field_resolver=self._resolve,
            type_resolver=lambda value, _info, _type: value.type_name,
        )
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [e.formatted for e in result.errors]
        if "__schema" in text:
            self._introspection[text] = out
            return out
        return self._record(text, variables, out)

    def _record(
        self, text: str, variables: dict[str, Any], out: dict[str, Any], *, valid: bool = True
    ) -> dict[str, Any]:
        errors = [str(e.get("message")) for e in out.get("errors", [])]
        with self._lock:
            self.queries.append(Query(text, variables, errors, valid))
        return out

    def register(self, node: Node) -> str:
        """Give ``node`` its ID; equal call chains get equal IDs."""
        with self._lock:
            if node.id:
                return node.id
            key = node.key()
            existing = self._by_key.get(key)
            if existing is None:
                existing = f"{node.type_name}:{key[:24]}"
                self._by_key[key] = existing
                self._by_id[existing] = node
            node.id = existing
            return existing

    def _resolve(self, value: Any, info: graphql.GraphQLResolveInfo, /, **args: Any) -> Any:
        parent: Node | None = value if isinstance(value, Node) else None
        type_name = info.parent_type.name
        field = info.field_name
        if field.startswith("__"):
            return graphql.default_field_resolver(value, info, **args)
        args = self._nodes_for_ids(info, args)

        handler = self._handlers.get((type_name, field)) or BUILTIN.get((type_name, field))
        if (type_name, field) == ("Container", "publish") and parent is not None:
            _check_publish(parent, args)
        if field in EVALUATING and parent is not None:
            answer = lambda: self._answer(handler, parent, args, info)  # noqa: E731
            return self._evaluate(field, parent, args, answer)
        return self._answer(handler, parent, args, info)

    def _answer(
        self,
        handler: Handler | None,
        parent: Node | None,
        args: dict[str, Any],
        info: graphql.GraphQLResolveInfo,
    ) -> Any:
        field = info.field_name
        if handler is not None:
            return handler(self, parent, args)
        if field in ("id", "sync") and parent is not None:
            return self.register(parent)

        named = graphql.get_named_type(info.return_type)
        if isinstance(named, graphql.GraphQLObjectType | graphql.GraphQLInterfaceType):
            if isinstance(graphql.get_nullable_type(info.return_type), graphql.GraphQLList):
                return []
            return Node(named.name, field, args, parent)
        return _zero(info.return_type, self)

    def _nodes_for_ids(
        self, info: graphql.GraphQLResolveInfo, args: dict[str, Any]
    ) -> dict[str, Any]:
        definition = info.parent_type.fields[info.field_name]
        # Keep what the caller chose: arguments left at the schema default are dropped.
        out = {
            name: value
            for name, value in args.items()
            if value != _arg_default(definition.args[name])
        }
        for name, value in list(out.items()):
            arg = definition.args.get(name)
            if arg is None or graphql.get_named_type(arg.type).name != "ID" or value is None:
                continue
            expected = _expected_type(arg)
            if isinstance(value, list):
                out[name] = [self._lookup(v, expected) for v in value]
            else:
                out[name] = self._lookup(value, expected)
        return out

    def _lookup(self, id_: str, expected: str | None = None) -> Node:
        """The node an ID argument names, of the type its ``@expectedType`` asks for.

        The engine decodes an ID argument into exactly the named type (dagql's
        ``ID.DecodeInput``): a Directory ID is not a File, a Secret or a Container.
        """
        with self._lock:
            node = self._by_id.get(id_)
        if node is None:
            msg = f"invalid ID {id_!r}: not returned by this engine"
            raise graphql.GraphQLError(msg)
        if expected is not None and node.type_name != expected:
            msg = f"expected {expected!r} ID, got {node.type_name} ID"
            raise graphql.GraphQLError(msg.replace("'", '"'))
        return node

    def _evaluate(
        self, field: str, node: Node, args: Mapping[str, Any], answer: Callable[[], Any]
    ) -> Any:
        """Run what a real engine would run for ``field``: fail, take ``delays[field]``, answer.

        The delay is the whole time the evaluation takes, the answer included
        (a real push to the test registry happens inside it).
        """
        if self._failures:
            for target in [node, *_nodes_in(args)]:
                for n in target.graph():
                    for predicate, message, extensions in self._failures:
                        if predicate(n):
                            ext = extensions(n) if extensions is not None else None
                            text = message(n) if callable(message) else message
                            raise graphql.GraphQLError(text, extensions=ext)
        started = time.monotonic()
        try:
            return answer()
        finally:
            if is_round_trip(field, node) and (delay := self.delays.get(field)):
                time.sleep(max(0.0, started + delay - time.monotonic()))
            with self._lock:
                self.evaluated.append((field, node, started, time.monotonic()))

    def round_trips(self) -> list[tuple[str, Node, float, float]]:
        """The evaluations that were engine round-trips (`is_round_trip`), in order."""
        with self._lock:
            return [e for e in self.evaluated if is_round_trip(e[0], e[1])]

    def serial_rounds(self) -> int:
        """The longest chain of round-trips each starting after the previous one ended.

        Read from the engine's own timestamps, so a slower machine does not move it:
        two round-trips that overlapped at all are in the same round.
        """
        trips = sorted(self.round_trips(), key=lambda e: e[2])
        depth: list[int] = []
        for i, (_, _, started, _) in enumerate(trips):
            before = [depth[j] for j in range(i) if trips[j][3] <= started]
            depth.append(1 + max(before, default=0))
        return max(depth, default=0)


def _expected_type(arg: graphql.GraphQLArgument) -> str | None:
    """The object type an ID argument's ``@expectedType(name:)`` directive names."""
    node = arg.ast_node
    for directive in (node.directives or ()) if node is not None else ():
        if directive.name.value == "expectedType":
            for argument in directive.arguments:
                if argument.name.value == "name" and isinstance(
                    argument.value, graphql.StringValueNode
                ):
                    return argument.value.value
    return None


def _arg_default(arg: graphql.GraphQLArgument) -> Any:
    """The schema default of an argument (``Undefined`` when it has none)."""
    if arg.default_value is not graphql.Undefined:
        return arg.default_value
    node = arg.ast_node
    if node is None or node.default_value is None:
        return graphql.Undefined
    return graphql.value_from_ast(node.default_value, arg.type)


def _zero(type_: graphql.GraphQLOutputType, engine: StandInEngine) -> Any:
    nullable = graphql.get_nullable_type(type_)
    if isinstance(nullable, graphql.GraphQLList):
        return []
    if isinstance(nullable, graphql.GraphQLEnumType):
        return next(iter(nullable.values))
    name = graphql.get_named_type(type_).name
    return {
        "String": "",
        "Int": 0,
        "Float": 0.0,
        "Boolean": False,
        "Platform": engine.default_platform,
        "JSON": "null",
        "Void": None,
    }.get(name, "")


# ---------------------------------------------------------------------------
# Built-in answers: what a test relies on without installing a handler


def _default_platform(engine: StandInEngine, _node: Node | None, _args: dict[str, Any]) -> str:
    return engine.default_platform


def _version(_engine: StandInEngine, _node: Node | None, _args: dict[str, Any]) -> str:
    return ENGINE_VERSION


def _container_platform(engine: StandInEngine, node: Node | None, _args: dict[str, Any]) -> str:
    assert node is not None
    return node.platform(engine.default_platform)


def _node_lookup(engine: StandInEngine, _node: Node | None, args: dict[str, Any]) -> Node:
    found = args["id"]
    assert isinstance(found, Node)
    return found


def _publish(engine: StandInEngine, node: Node | None, args: dict[str, Any]) -> str:
    assert node is not None
    variants = list(args.get("platformVariants") or [])
    content = _canon([node, *variants])
    digest = "sha256:" + hashlib.sha256(content.encode()).hexdigest()
    push = Push(str(args["address"]), node, variants, digest, args.get("registryService"))
    if engine.on_publish is not None:
        real = engine.on_publish(push)
        if real:
            push.digest = real
    with engine._lock:
        engine.pushes.append(push)
    address = str(args["address"]).split("@", 1)[0]
    return f"{address}@{push.digest}"


# The reference grammar of distribution/reference, which the engine parses
# `publish` and `withRegistryAuth` addresses with (ParseNormalizedNamed).
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}))?"
)
# Rootfs-making calls: a container chain with none of them is empty (scratch).
_ROOTFS_FIELDS = frozenset(
    {
        "from",
        "withRootfs",
        "import",
        "withDirectory",
        "withFile",
        "withFiles",
        "withNewFile",
        "withExec",
        "withSymlink",
    }
)


def parse_reference(address: str) -> tuple[str, str, str | None, str | None]:
    """``(domain, path, tag, digest)`` of an image address, as the engine parses it.

    Docker Hub short names are normalised (``alpine`` is
    ``docker.io/library/alpine``); anything else malformed is the engine's
    ``invalid reference format`` error.
    """
    first, slash, _ = address.partition("/")
    has_domain = bool(slash) and (
        any(c in first for c in ".:[") or first == "localhost" or first.lower() != first
    )
    text = address if has_domain else f"docker.io/{address}"
    found = _REFERENCE.fullmatch(text)
    if not found or not found["domain"] or len(f"{found['domain']}/{found['path']}") > 255:
        msg = f"invalid reference format: {address!r}"
        raise graphql.GraphQLError(msg)
    domain, path = found["domain"], found["path"]
    if domain == "docker.io" and "/" not in path:
        path = f"library/{path}"
    return domain, path, found["tag"], found["digest"]


def _check_publish(node: Node, args: Mapping[str, Any]) -> None:
    """What the engine refuses before it pushes: a bad address, an empty container."""
    parse_reference(str(args["address"]))
    for ctr in [node, *(args.get("platformVariants") or [])]:
        if ctr.root_container() is not None and not any(
            n.field in _ROOTFS_FIELDS for n in ctr.chain()
        ):
            msg = f"cannot publish an empty container (no rootfs): {ctr.describe()}"
            raise graphql.GraphQLError(msg)


def registry_credentials(engine: StandInEngine, push: Push) -> tuple[str, str] | None:
    """The login ``withRegistryAuth`` attached to the pushed container for its registry."""
    domain = parse_reference(push.address)[0]
    found = None
    for auth in push.auth():
        if parse_reference(str(auth.args["address"]))[0] == domain:
            found = auth  # the last one for the registry wins
    if found is None:
        return None
    return str(found.args["username"]), _plaintext(engine, found.args["secret"], {})


def _port_forwards(service: Node) -> tuple[str, dict[int, int]]:
    """``(host, {frontend: backend})`` of a host service, as the engine builds it.

    ``host.service(ports:, host:)`` forwards each frontend port (default: the
    backend's) to ``host:backend``; ``address("tcp://h:p").service`` is the
    host service ``h`` with ``p`` forwarded to ``p`` (core/schema/address.go),
    which is what the CLI makes of ``--registry-service tcp://h:p``.
    """
    parent = service.parent
    if service.field == "service" and parent is not None and parent.type_name == "Host":
        forwards = {
            int(f.get("frontend") or f["backend"]): int(f["backend"])
            for f in service.args.get("ports") or []
        }
        if not forwards:
            msg = "a host service needs at least one port to forward"
            raise graphql.GraphQLError(msg)
        return str(service.args.get("host") or "localhost"), forwards
    if service.field == "service" and parent is not None and parent.type_name == "Address":
        value = str(parent.args["value"])
        scheme, _, rest = value.partition("://")
        host, _, port = rest.rpartition(":")
        if scheme != "tcp" or not host or not port.isdigit():
            msg = f"unsupported service address: {value!r}. Must be a valid tcp:// URL"
            raise graphql.GraphQLError(msg)
        return host, {int(port): int(port)}
    msg = f"the stand-in engine has no endpoint for {service.describe()} (host services only)"
    raise graphql.GraphQLError(msg)


def _service_start(engine: StandInEngine, node: Node | None, _args: dict[str, Any]) -> str:
    """Starting a host service checks it and returns its ID (starting twice is the same)."""
    assert node is not None
    _port_forwards(node)
    return engine.register(node)


def service_endpoint(node: Node, port: int | None = None) -> str:
    """Where a module that dials the host service ``node`` on ``port`` ends up.

    The engine answers ``<service hostname>:<port>`` and its tunnel carries the
    connection to ``host:backend`` on the CLI's machine. The stand-in runs the
    module on that machine, so it answers ``host:backend`` directly: dialing it
    reaches what the tunnel would. A port the service does not forward is an
    error (the engine's answer would lead nowhere).
    """
    host, forwards = _port_forwards(node)
    if port is None:
        port = next(iter(forwards), None)
    if port not in forwards:
        msg = f"{node.describe()} forwards no port {port} (it forwards {sorted(forwards)})"
        raise graphql.GraphQLError(msg)
    return f"{host}:{forwards[port]}"


def _service_endpoint(_engine: StandInEngine, node: Node | None, args: dict[str, Any]) -> str:
    assert node is not None
    endpoint = service_endpoint(node, args.get("port"))
    scheme = args.get("scheme") or ""
    return f"{scheme}://{endpoint}" if scheme else endpoint


def _plaintext(engine: StandInEngine, node: Node | None, _args: dict[str, Any]) -> str:
    assert node is not None
    head = node.chain()[0]
    if head.field == "setSecret":
        return str(head.args["plaintext"])
    if head.field == "secret":
        uri = str(head.args["uri"])
        scheme, _, name = uri.partition("://")
        if scheme == "env" and name in engine.env:
            return engine.env[name]
        msg = f"secret {uri!r} is not set in the stand-in engine's env"
        raise graphql.GraphQLError(msg)
    msg = f"cannot read the plaintext of {node.describe()}"
    raise graphql.GraphQLError(msg)


# -- host files ---------------------------------------------------------------


def _host_files(path: str, exclude: list[str], include: list[str]) -> dict[str, bytes]:
    base = Path(path)
    if not base.is_dir():
        msg = f"host directory {path!r} does not exist"
        raise graphql.GraphQLError(msg)
    files: dict[str, bytes] = {}
    for file in sorted(base.rglob("*")):
        if not file.is_file():
            continue
        rel = file.relative_to(base).as_posix()
        if _excluded(rel, exclude, include):
            continue
        files[rel] = file.read_bytes()
    return files


class PatternMatcher:
    """Path patterns as the engine matches ``include``/``exclude`` (and ``Ignore``).

    The engine filters with moby/patternmatcher, the ``.dockerignore`` matcher
    (through tonistiigi/fsutil): a pattern is anchored at the root of the
    directory (``target`` or ``target/`` is only the top-level ``target``;
    ``**/target`` is any ``target``), ``*`` and ``?`` stop at ``/``, ``**`` spans
    any number of folders, a pattern that matches a folder matches everything in
    it, a leading ``!`` re-includes, and the last pattern that matches decides.
    """

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[tuple[bool, Callable[[str], bool]]] = []
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            text = posixpath.normpath(text)  # Go's filepath.Clean: drops a trailing "/"
            negate = text.startswith("!")
            if negate:
                text = text[1:]
                if not text:
                    msg = 'illegal exclusion pattern: "!"'
                    raise graphql.GraphQLError(msg)
            self.patterns.append((negate, self._compile(text)))

    @staticmethod
    def _compile(pattern: str) -> Callable[[str], bool]:
        if "*" not in pattern and "?" not in pattern and "[" not in pattern and "\\" not in pattern:
            return lambda path: path == pattern
        if pattern.endswith("/**") and not any(c in pattern[:-3] for c in "*?[\\"):
            prefix = pattern[:-2]  # "dir/**": everything under dir/
            return lambda path: path.startswith(prefix)
        regex, i = "^", 0
        while i < len(pattern):
            ch = pattern[i]
            if pattern.startswith("**", i):
                i += 2
                if i < len(pattern) and pattern[i] == "/":
                    i += 1
                regex += ".*" if i == len(pattern) else "(.*/)?"
                continue
            if ch == "*":
                regex += "[^/]*"
            elif ch == "?":
                regex += "[^/]"
            elif ch == "\\" and i + 1 < len(pattern):
                i += 1
                regex += re.escape(pattern[i])
            elif ch in "[]":
                regex += ch
            else:
                regex += re.escape(ch)
            i += 1
        compiled = re.compile(regex + "$")
        return lambda path: compiled.match(path) is not None

    def matches(self, path: str) -> bool:
        """Whether ``path`` (or a folder above it) is matched, the last pattern deciding."""
        parts = path.split("/")
        parents = ["/".join(parts[: i + 1]) for i in range(len(parts) - 1)]
        matched = False
        for negate, match in self.patterns:
            if negate != matched:
                continue  # only a later "!" can undo a match, only a plain pattern make one
            if match(path) or any(match(parent) for parent in parents):
                matched = not negate
        return matched


def _excluded(rel: str, exclude: list[str], include: list[str]) -> bool:
    """Whether ``include``/``exclude`` leave out the file ``rel``, as the engine filters."""
    if include and not PatternMatcher(include).matches(rel):
        return True
    return bool(exclude) and PatternMatcher(exclude).matches(rel)


def directory_files(node: Node, engine: StandInEngine | None = None) -> dict[str, bytes]:
    """The files of a Directory node, for chains the stand-in can evaluate.

    A container's directory is answered from `engine.container_dirs`.
    """
    field, args = node.field, node.args
    if field == "directory" and node.parent is not None and node.parent.type_name == "Container":
        path = str(args["path"])
        answer = engine.container_dirs.get(path) if engine is not None else None
        if answer is None:
            msg = f"the stand-in engine has no files for {node.describe()}"
            raise graphql.GraphQLError(msg)
        return dict(answer if isinstance(answer, dict) else answer(node.parent))
    if field == "directory" and node.parent is not None and node.parent.type_name == "Host":
        return _host_files(
            str(args["path"]), list(args.get("exclude") or []), list(args.get("include") or [])
        )
    if field == "directory" and node.parent is None:
        return {}
    if node.parent is None or node.parent.type_name != "Directory":
        msg = f"the stand-in engine cannot list the files of {node.describe()}"
        raise graphql.GraphQLError(msg)
    files = directory_files(node.parent, engine)
    path = str(args.get("path", "")).strip("/")
    if field == "directory":
        prefix = f"{path}/" if path not in ("", ".") else ""
        return {k[len(prefix) :]: v for k, v in files.items() if k.startswith(prefix)}
    if field == "withoutDirectory":
        return {k: v for k, v in files.items() if not k.startswith(f"{path}/")}
    if field == "withoutFile":
        return {k: v for k, v in files.items() if k != path}
    if field == "withoutFiles":
        drop = {str(p).strip("/") for p in args["paths"]}
        return {k: v for k, v in files.items() if k not in drop}
    if field == "withNewFile":
        return {**files, path: str(args["contents"]).encode()}
    if field == "withFile":
        return {**files, path: file_contents(args["source"])}
    if field == "withDirectory":
        sub = directory_files(args["source"], engine)
        excl, incl = list(args.get("exclude") or []), list(args.get("include") or [])
        prefix = f"{path}/" if path not in ("", ".") else ""
        added = {f"{prefix}{k}": v for k, v in sub.items() if not _excluded(k, excl, incl)}
        return {**files, **added}
    if field == "filter":
        excl, incl = list(args.get("exclude") or []), list(args.get("include") or [])
        return {k: v for k, v in files.items() if not _excluded(k, excl, incl)}
    msg = f"the stand-in engine cannot evaluate Directory.{field}"
    raise graphql.GraphQLError(msg)


def file_contents(node: Node) -> bytes:
    """The bytes of a File node loaded from the host or a host directory."""
    if node.field == "file" and node.parent is not None and node.parent.type_name == "Directory":
        files = directory_files(node.parent)
        path = str(node.args["path"]).strip("/")
        if path not in files:
            msg = f"{path}: no such file in the directory"
            raise graphql.GraphQLError(msg)
        return files[path]
    if node.field == "file" and node.parent is not None and node.parent.type_name == "Host":
        return Path(str(node.args["path"])).read_bytes()
    if node.field == "withName" and node.parent is not None:
        return file_contents(node.parent)
    msg = f"the stand-in engine cannot read the contents of {node.describe()}"
    raise graphql.GraphQLError(msg)


def _dir_exists(engine: StandInEngine, node: Node | None, args: dict[str, Any]) -> bool:
    assert node is not None
    files = directory_files(node, engine)
    path = str(args["path"]).strip("/")
    is_file = path in files
    is_dir = any(k.startswith(f"{path}/") for k in files) or path in ("", ".")
    expected = args.get("expectedType")
    if expected == "REGULAR_TYPE":
        return is_file
    if expected == "DIRECTORY_TYPE":
        return is_dir
    return is_file or is_dir


def _dir_entries(engine: StandInEngine, node: Node | None, args: dict[str, Any]) -> list[str]:
    assert node is not None
    files = directory_files(node, engine)
    path = str(args.get("path") or "").strip("/")
    prefix = f"{path}/" if path not in ("", ".") else ""
    names = {k[len(prefix) :].split("/", 1)[0] for k in files if k.startswith(prefix)}
    if prefix and not names:
        msg = f"{path}: no such directory"
        raise graphql.GraphQLError(msg)
    return sorted(names)


def _dir_glob(engine: StandInEngine, node: Node | None, args: dict[str, Any]) -> list[str]:
    assert node is not None
    match = PatternMatcher._compile(posixpath.normpath(str(args["pattern"])))
    return sorted(k for k in directory_files(node, engine) if match(k))


def _file_contents(engine: StandInEngine, node: Node | None, _args: dict[str, Any]) -> str:
    assert node is not None
    parent = node.parent
    if node.field == "file" and parent is not None and parent.type_name == "Container":
        answer = engine.container_files.get(str(node.args["path"]))
        if answer is None:
            msg = f"the stand-in engine has no contents for {node.describe()}"
            raise graphql.GraphQLError(msg)
        return answer if isinstance(answer, str) else answer(parent)
    return file_contents(node).decode()


def _file_size(engine: StandInEngine, node: Node | None, args: dict[str, Any]) -> int:
    assert node is not None
    return len(_file_contents(engine, node, args).encode())


def _file_digest(engine: StandInEngine, node: Node | None, args: dict[str, Any]) -> str:
    """A file's digest is the sha256 of its content, as the engine's is (name and
    metadata aside): equal content, equal digest, whatever chain produced it."""
    assert node is not None
    content = _file_contents(engine, node, args).encode()
    return "sha256:" + hashlib.sha256(content).hexdigest()


def is_round_trip(field: str, node: Node) -> bool:
    """Whether evaluating ``field`` of ``node`` is one of the engine round-trips the
    benchmarks simulate (``ROUND_TRIPS``, or a file read out of a container)."""
    if field in ROUND_TRIPS:
        return True
    return field in FILE_READS and node.type_name == "File" and node.root_container() is not None


_VERSION_LINE = re.compile(r'^(version\s*=\s*)"[^"]*"', re.MULTILINE)


def cargo_chef_recipe(planner: Node) -> str:
    """What `cargo chef prepare` writes for the source the planner container was given.

    cargo-chef's skeleton: every manifest and the lockfile, with the workspace's own
    packages' versions masked (``0.0.1``) so that a release's version bump leaves the
    recipe unchanged; ``.cargo/config[.toml]`` and the toolchain file as they are.
    Sources' contents are not in it. (The stand-in masks by text, line by line: a
    ``version = "…"`` line in a manifest's ``[package]`` or ``[workspace.package]``
    table, and the ``version`` of every lockfile package that has no ``source``.)
    """
    mounted = [n for n in planner.calls("withDirectory") if n.args.get("path") == "/app"]
    if not mounted:
        msg = f"the stand-in finds no source at /app in {planner.describe()}"
        raise graphql.GraphQLError(msg)
    files = directory_files(mounted[-1].args["source"])
    manifests = []
    for path in sorted(files):
        if path == "Cargo.toml" or path.endswith("/Cargo.toml"):
            manifests.append(
                {"relative_path": path, "contents": _mask_manifest(files[path].decode())}
            )
    lock = files.get("Cargo.lock")
    skeleton = {
        "manifests": manifests,
        "config_file": (
            files.get(".cargo/config.toml") or files.get(".cargo/config") or b""
        ).decode()
        or None,
        "lock_file": _mask_lock(lock.decode()) if lock is not None else None,
        "rust_toolchain_file": next(
            (
                [name, files[name].decode()]
                for name in ("rust-toolchain.toml", "rust-toolchain")
                if name in files
            ),
            None,
        ),
    }
    return json.dumps({"skeleton": skeleton}, sort_keys=True)


def _mask_manifest(text: str) -> str:
    out, table = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            table = stripped
        elif stripped.startswith("#") or not stripped:
            continue
        elif table in ("[package]", "[workspace.package]"):
            line = _VERSION_LINE.sub(r'\1"0.0.1"', line)
        out.append(line)
    return "\n".join(out)


def _mask_lock(text: str) -> str:
    blocks = text.split("[[package]]")
    masked = [blocks[0]]
    for block in blocks[1:]:
        if "\nsource = " not in block:
            block = _VERSION_LINE.sub(r'\1"0.0.1"', block)
        masked.append(block)
    return "[[package]]".join(masked)


def recipe_dependency_crates(recipe: str) -> int:
    """How many dependency crates (lockfile packages with a ``source``) a recipe holds."""
    lock = json.loads(recipe)["skeleton"].get("lock_file") or ""
    return lock.count("\nsource = ")


BUILTIN: dict[tuple[str, str], Handler] = {
    ("Query", "defaultPlatform"): _default_platform,
    ("Query", "version"): _version,
    ("Query", "node"): _node_lookup,
    ("Container", "platform"): _container_platform,
    ("Container", "publish"): _publish,
    ("Secret", "plaintext"): _plaintext,
    ("Service", "start"): _service_start,
    ("Service", "endpoint"): _service_endpoint,
    ("Directory", "exists"): _dir_exists,
    ("Directory", "entries"): _dir_entries,
    ("Directory", "glob"): _dir_glob,
    ("File", "contents"): _file_contents,
    ("File", "size"): _file_size,
    ("File", "digest"): _file_digest,
}


def push_to_registry(
    engine: StandInEngine, *, registry: str, base_url: str | None
) -> Callable[[Push], str | None]:
    """A publish hook that really pushes, for addresses in the loopback ``registry``.

    A push with a ``registryService`` goes where that host service forwards the
    address's port (:func:`service_endpoint`), as the engine dials the service
    for the address's host; other pushes go to ``base_url``, and with
    ``base_url=None`` (nothing listens at the address itself) they fail as the
    engine's dial would.

    It pushes a small image with the platforms of the published variants (the
    same call chains give the same image, so every tag of one publish names one
    index; a container without variants is one image manifest, as the engine
    pushes it) and returns the digest the registry reports. It logs in with what
    ``withRegistryAuth`` attached to the pushed container for that registry, as
    the engine does, and with nothing else: a registry that requires a login
    refuses a push without one or with a wrong secret, and the publish fails.
    """
    from tests.support.registry_server import BuiltImage, build_image, push_built_image

    images: dict[str, BuiltImage] = {}
    locks: dict[str, threading.Lock] = {}
    guard = threading.Lock()

    def hook(push: Push) -> str | None:
        host, _, rest = push.address.partition("/")
        if host != registry:
            return None
        repository, _, tag = rest.rpartition(":")
        seed = push.container.key() + "".join(v.key() for v in push.variants)
        with guard:
            if seed not in images:  # the same image for every tag of one publish
                labels = {
                    n.args["name"]: n.args["value"] for n in push.container.calls("withLabel")
                }
                # Without platform variants the engine pushes one image manifest, no index.
                images[seed] = build_image(
                    push.platforms(engine.default_platform),
                    seed=seed,
                    labels=labels,
                    index=bool(push.variants),
                )
            lock = locks.setdefault(repository, threading.Lock())
        # docker-registry 2.8 can answer MANIFEST_BLOB_UNKNOWN to concurrent manifest
        # PUTs in one repository; the stand-in pushes one at a time per repository.
        auth = registry_credentials(engine, push)
        target = base_url
        if push.registry_service is not None:
            _, colon, port = host.rpartition(":")
            has_port = colon and not host.endswith("]")  # [::1] alone has no port
            endpoint = service_endpoint(push.registry_service, int(port) if has_port else 80)
            target = f"http://{endpoint}"
        if target is None:
            msg = f"failed to push {push.address}: dial tcp {host}: connect: connection refused"
            raise graphql.GraphQLError(msg)
        with lock:
            try:
                return push_built_image(target, repository, [tag], images[seed], auth=auth)
            except RuntimeError as e:
                msg = f"failed to push {push.address}: {e}"
                raise graphql.GraphQLError(msg) from None

    return hook


# ---------------------------------------------------------------------------
# Registration: reading the module's typedefs back


@dataclasses.dataclass
class ArgDef:
    name: str
    type: str
    optional: bool
    description: str
    default_value: Any
    default_path: str | None
    ignore: list[str]


@dataclasses.dataclass
class FunctionDef:
    name: str
    return_type: str
    description: str
    args: dict[str, ArgDef]
    cache_policy: str | None


@dataclasses.dataclass
class ObjectDef:
    name: str
    description: str
    functions: dict[str, FunctionDef]
    fields: dict[str, str]
    constructor: FunctionDef | None


@dataclasses.dataclass
class ModuleDef:
    objects: dict[str, ObjectDef]
    enums: dict[str, list[str]]


def typedef_name(node: Node) -> tuple[str, bool]:
    """Render a TypeDef chain as ``(type, optional)``, e.g. ``("[Platform]", False)``."""
    name = "?"
    optional = False
    for n in node.chain():
        if n.field == "withKind":
            name = {
                "STRING_KIND": "String",
                "INTEGER_KIND": "Int",
                "BOOLEAN_KIND": "Boolean",
                "FLOAT_KIND": "Float",
                "VOID_KIND": "Void",
            }.get(n.args["kind"], n.args["kind"])
        elif n.field in ("withObject", "withEnum", "withScalar", "withInterface"):
            name = str(n.args["name"])
        elif n.field == "withListOf":
            name = f"[{typedef_name(n.args['elementType'])[0]}]"
        elif n.field == "withOptional":
            optional = bool(n.args["optional"])
    return name, optional


def _function_def(node: Node) -> FunctionDef:
    head = node.first("function")
    fn = FunctionDef(
        name=str(head.args["name"]),
        return_type=typedef_name(head.args["returnType"])[0],
        description="",
        args={},
        cache_policy=None,
    )
    for n in node.chain():
        if n.field == "withDescription":
            fn.description = str(n.args["description"])
        elif n.field == "withCachePolicy":
            fn.cache_policy = str(n.args["policy"])
        elif n.field == "withArg":
            type_name, optional = typedef_name(n.args["typeDef"])
            fn.args[str(n.args["name"])] = ArgDef(
                name=str(n.args["name"]),
                type=type_name,
                optional=optional,
                description=str(n.args.get("description") or ""),
                default_value=json.loads(n.args["defaultValue"])
                if n.args.get("defaultValue")
                else None,
                default_path=n.args.get("defaultPath"),
                ignore=list(n.args.get("ignore") or []),
            )
    return fn


def module_def(node: Node) -> ModuleDef:
    """Read the objects, functions, arguments and enums a module registered."""
    mod = ModuleDef(objects={}, enums={})
    for n in node.chain():
        if n.field == "withObject":
            td = n.args["object"]
            head = td.first("withObject")
            obj = ObjectDef(
                str(head.args["name"]), str(head.args.get("description") or ""), {}, {}, None
            )
            for m in td.chain():
                if m.field == "withFunction":
                    fn = _function_def(m.args["function"])
                    obj.functions[fn.name] = fn
                elif m.field == "withConstructor":
                    obj.constructor = _function_def(m.args["function"])
                elif m.field == "withField":
                    obj.fields[str(m.args["name"])] = typedef_name(m.args["typeDef"])[0]
            mod.objects[obj.name] = obj
        elif n.field == "withEnum":
            td = n.args["enum"]
            mod.enums[str(td.first("withEnum").args["name"])] = [
                str(m.args["name"]) for m in td.calls("withEnumMember")
            ]
    return mod


# ---------------------------------------------------------------------------
# Calling the module the way the engine does


class ModuleCaller:
    """Calls the module's functions through ``dagger.mod.Module.get_result``.

    Arguments are given as the engine passes them: JSON-ready values, enum
    members by name, objects by ID.
    """

    def __init__(self, engine: StandInEngine | None, source_id: str | None) -> None:
        """``engine`` is needed only to read typedefs back (None: an engine in another process)."""
        from ci.main import Brokkr

        self.engine = engine
        self.module = Brokkr.__dagger_module__
        self.source_id = source_id

    async def state(self, **constructor_args: Any) -> dict[str, Any]:
        """The main object's state after its constructor, as the engine stores it."""
        inputs = dict(constructor_args)
        if self.source_id is not None:
            inputs.setdefault("source", self.source_id)
        return await self.module.get_result("Brokkr", {}, "", inputs)

    async def call(
        self,
        function: str,
        *,
        parent: str = "Brokkr",
        state: Mapping[str, Any] | None = None,
        **inputs: Any,
    ) -> Any:
        """``dagger call <function> --<input> …``: the unstructured result."""
        if state is None and parent == "Brokkr":
            state = await self.state()
        return await self.module.get_result(parent, state or {}, function, inputs)

    async def typedefs(self) -> ModuleDef:
        """What the module registers with the engine."""
        assert self.engine is not None, "reading typedefs needs the engine object"
        module_id = await self.module._typedefs()
        return module_def(self.engine.node(module_id))


# ---------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def standin_engine() -> Iterator[StandInEngine]:
    """The stand-in engine server, started once per test session."""
    path = schema_path()
    if not path.is_file():
        # A missing schema is a broken checkout or a wrong DAGGER_SCHEMA: never a skip.
        pytest.fail(
            f"the Dagger engine schema {path} is missing: restore {SCHEMA_FILE.name} "
            "in tests/schema/ or point DAGGER_SCHEMA at a copy of the engine's schema"
        )
    engine = StandInEngine(path)
    engine.start()
    yield engine
    engine.stop()


@pytest.fixture
async def engine(
    standin_engine: StandInEngine, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[StandInEngine]:
    """A stand-in engine with a live SDK connection (``dag`` works), reset for this test."""
    import dagger

    standin_engine.reset()
    monkeypatch.setenv("DAGGER_SESSION_PORT", str(standin_engine.port))
    monkeypatch.setenv("DAGGER_SESSION_TOKEN", standin_engine.token)
    async with dagger.connection():
        yield standin_engine
    # Every query the module sent must be valid against the real schema.
    invalid = [q for q in standin_engine.queries if not q.valid]
    assert not invalid, f"queries the real engine would reject: {invalid}"


@pytest.fixture
async def fixture_source(engine: StandInEngine) -> str:
    """The ID of the Brokkr-shaped fixture workspace, loaded from the host."""
    from dagger import dag

    if not FIXTURE_WORKSPACE.is_dir():
        pytest.fail(f"fixture workspace missing: {FIXTURE_WORKSPACE}")
    return await dag.host().directory(str(FIXTURE_WORKSPACE)).id()


@pytest.fixture
async def brokkr(engine: StandInEngine, fixture_source: str) -> ModuleCaller:
    """The module, called as `dagger call` would, with the fixture workspace as ``--source``."""
    return ModuleCaller(engine, fixture_source)

"""A real OCI registry for the tests, and a helper that pushes tiny images into it.

The registry is Debian's ``docker-registry`` (distribution v2.8), started on a
free loopback port with its own storage. ``push_image`` builds small but valid
OCI images (a gzip tar layer, a config naming the platform, one manifest per
platform, an index) and uploads them through the distribution API, so that
anything reading the registry sees what ``docker buildx`` would have pushed.

The helpers (``RegistryServer``, ``start_registry``, ``push_image``,
``htpasswd_entry``) have no pytest dependency; only the fixtures at the bottom
use pytest.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import httpx

from tests.support.loopback import Loopback

try:  # the fixtures need pytest; the helpers work without it
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

REGISTRY_BINARY = "/usr/bin/docker-registry"
INSTALL_HINT = "apt-get install docker-registry"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

_MEDIA_TYPES = {
    "oci": (OCI_INDEX, OCI_MANIFEST, OCI_CONFIG, OCI_LAYER),
    "docker": (DOCKER_LIST, DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER),
}


@dataclass(frozen=True)
class RegistryServer(Loopback):
    """A running registry: where it listens and, for the auth one, who may log in."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    storage: Path | None = None
    """The registry's storage folder (its layout is distribution's own)."""
    deletion: bool = False
    """Whether the registry accepts ``DELETE /v2/<name>/manifests/<digest>``."""

    @property
    def auth(self) -> tuple[str, str] | None:
        if self.username is None or self.password is None:
            return None
        return (self.username, self.password)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def htpasswd_entry(username: str, password: str) -> str:
    """One bcrypt htpasswd line, the only hash distribution's htpasswd auth accepts.

    Uses the ``bcrypt`` module when it is installed, else ``htpasswd`` from
    Debian's ``apache2-utils``.
    """
    try:
        import bcrypt
    except ImportError:
        pass
    else:
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        return f"{username}:{hashed}"
    htpasswd = shutil.which("htpasswd")
    if htpasswd is None:
        raise RuntimeError(
            "neither the bcrypt module nor htpasswd is available: apt-get install apache2-utils"
        )
    result = subprocess.run(
        [htpasswd, "-nbB", "-C", "4", username, password],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


def _config_yaml(storage: Path, port: int, htpasswd: Path | None, *, deletion: bool = False) -> str:
    lines = [
        "version: 0.1",
        "log:",
        "  level: error",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {storage}",
    ]
    if deletion:  # distribution refuses DELETE (405 UNSUPPORTED) unless this is set
        lines += ["  delete:", "    enabled: true"]
    lines += [
        "http:",
        f"  addr: 127.0.0.1:{port}",
        "  secret: brokkr-ci-tests",
    ]
    if htpasswd is not None:
        lines += [
            "auth:",
            "  htpasswd:",
            "    realm: brokkr-tests",
            f"    path: {htpasswd}",
        ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def start_registry(
    workdir: Path,
    *,
    username: str | None = None,
    password: str | None = None,
    deletion: bool = False,
    startup_timeout: float = 15.0,
) -> Iterator[RegistryServer]:
    """Run ``docker-registry serve`` on a free loopback port until the block ends.

    With ``username`` and ``password`` the registry requires htpasswd Basic auth;
    with ``deletion`` it accepts manifest deletion (``storage.delete.enabled``).
    """
    if not Path(REGISTRY_BINARY).exists():
        raise FileNotFoundError(f"{REGISTRY_BINARY} is missing: {INSTALL_HINT}")
    workdir.mkdir(parents=True, exist_ok=True)
    htpasswd = None
    if username is not None and password is not None:
        htpasswd = workdir / "htpasswd"
        htpasswd.write_text(htpasswd_entry(username, password) + "\n")
    last_output = ""
    for _ in range(3):  # a port taken between choosing and binding: try another
        port = free_port()
        config = workdir / "config.yml"
        config.write_text(_config_yaml(workdir / "storage", port, htpasswd, deletion=deletion))
        log_path = workdir / "registry.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            if _wait_until_ready(process, port, startup_timeout):
                yield RegistryServer(
                    "127.0.0.1", port, username, password, workdir / "storage", deletion
                )
                return
            last_output = log_path.read_text(errors="replace")[-2000:]
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    raise RuntimeError(f"docker-registry did not start:\n{last_output}")


def _wait_until_ready(process: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.05)
            continue
        # 200 when open, 401 when it asks for credentials: either way it serves.
        return response.status_code in (200, 401)
    return False


# Image building ------------------------------------------------------------------


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical_json(document: object) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _layer(content: bytes) -> tuple[bytes, str]:
    """A gzip tar holding one file; returns the blob and the uncompressed diff id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("brokkr-test.txt")
        info.size = len(content)
        info.mtime = 0
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), _digest(tar_bytes)


def _split_platform(platform: str) -> dict[str, str]:
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"platform {platform!r} is not os/arch[/variant]")
    result = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        result["variant"] = parts[2]
    return result


@dataclass(frozen=True)
class BuiltImage:
    """What ``build_image`` made: blobs by digest and manifests in push order."""

    blobs: dict[str, bytes]
    manifests: list[tuple[str, bytes]]  # (media type, body); the last one is the top
    top_digest: str
    sizes: dict[str, int]  # platform -> config size + layer sizes


def build_image(
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    *,
    seed: str = "x",
    index: bool = True,
    media_types: str = "oci",
    attestation: bool = False,
    layers: int = 1,
    labels: Mapping[str, str] | None = None,
) -> BuiltImage:
    """Build a tiny valid image in memory (see ``push_image`` for the options)."""
    if media_types not in _MEDIA_TYPES:
        raise ValueError(f"media_types must be one of {sorted(_MEDIA_TYPES)}")
    index_type, manifest_type, config_type, layer_type = _MEDIA_TYPES[media_types]
    if not platforms:
        raise ValueError("at least one platform is needed")
    if not index and len(platforms) != 1:
        raise ValueError("index=False needs exactly one platform")
    blobs: dict[str, bytes] = {}
    manifests: list[tuple[str, bytes]] = []
    entries: list[dict[str, object]] = []
    sizes: dict[str, int] = {}
    for platform in platforms:
        fields = _split_platform(platform)
        layer_descriptors = []
        diff_ids = []
        for number in range(layers):
            blob, diff_id = _layer(f"{seed} {platform} layer {number}\n".encode() * (number + 1))
            blobs[_digest(blob)] = blob
            diff_ids.append(diff_id)
            layer_descriptors.append(
                {"mediaType": layer_type, "digest": _digest(blob), "size": len(blob)}
            )
        config = _canonical_json(
            {
                **fields,
                "config": {"Labels": {"org.opencontainers.image.title": seed, **(labels or {})}},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }
        )
        blobs[_digest(config)] = config
        manifest = _canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": manifest_type,
                "config": {
                    "mediaType": config_type,
                    "digest": _digest(config),
                    "size": len(config),
                },
                "layers": layer_descriptors,
            }
        )
        manifests.append((manifest_type, manifest))
        sizes[platform] = len(config) + sum(int(d["size"]) for d in layer_descriptors)
        entries.append(
            {
                "mediaType": manifest_type,
                "digest": _digest(manifest),
                "size": len(manifest),
                "platform": fields,
            }
        )
        if attestation:
            statement = _canonical_json({"_type": "https://in-toto.io/Statement/v0.1"})
            blobs[_digest(statement)] = statement
            empty_config = b"{}"
            blobs[_digest(empty_config)] = empty_config
            attestation_manifest = _canonical_json(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {
                        "mediaType": OCI_CONFIG,
                        "digest": _digest(empty_config),
                        "size": len(empty_config),
                    },
                    "layers": [
                        {
                            "mediaType": "application/vnd.in-toto+json",
                            "digest": _digest(statement),
                            "size": len(statement),
                        }
                    ],
                }
            )
            manifests.append((OCI_MANIFEST, attestation_manifest))
            entries.append(
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": _digest(attestation_manifest),
                    "size": len(attestation_manifest),
                    "platform": {"os": "unknown", "architecture": "unknown"},
                    "annotations": {
                        "vnd.docker.reference.type": "attestation-manifest",
                        "vnd.docker.reference.digest": _digest(manifest),
                    },
                }
            )
    if index:
        top = _canonical_json({"schemaVersion": 2, "mediaType": index_type, "manifests": entries})
        manifests.append((index_type, top))
    return BuiltImage(blobs, manifests, _digest(manifests[-1][1]), sizes)


def _check(response: httpx.Response, what: str) -> None:
    if response.status_code >= 300:
        raise RuntimeError(f"{what}: HTTP {response.status_code} {response.text[:500]}")


def push_built_image(
    base_url: str,
    repository: str,
    tags: Sequence[str],
    image: BuiltImage,
    *,
    auth: tuple[str, str] | None = None,
) -> str:
    """Upload ``image``'s blobs and manifests; tag the top manifest with every tag."""
    with httpx.Client(base_url=base_url, auth=auth, timeout=30.0) as client:
        for digest, blob in image.blobs.items():
            head = client.head(f"/v2/{repository}/blobs/{digest}")
            if head.status_code == 200:
                continue
            started = client.post(f"/v2/{repository}/blobs/uploads/")
            _check(started, f"starting the upload of {digest}")
            location = httpx.URL(urljoin(f"{base_url}/", started.headers["Location"]))
            finished = client.put(
                location.copy_add_param("digest", digest),
                content=blob,
                headers={"Content-Type": "application/octet-stream"},
            )
            _check(finished, f"uploading {digest}")
        for media_type, body in image.manifests[:-1]:
            _check(
                client.put(
                    f"/v2/{repository}/manifests/{_digest(body)}",
                    content=body,
                    headers={"Content-Type": media_type},
                ),
                "pushing a platform manifest",
            )
        media_type, body = image.manifests[-1]
        for reference in list(tags) or [image.top_digest]:
            _check(
                client.put(
                    f"/v2/{repository}/manifests/{reference}",
                    content=body,
                    headers={"Content-Type": media_type},
                ),
                f"pushing {repository}:{reference}",
            )
    return image.top_digest


def push_image(
    base_url: str,
    repository: str,
    tag: str | Sequence[str],
    *,
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    auth: tuple[str, str] | None = None,
    seed: str = "x",
    index: bool = True,
    media_types: str = "oci",
    attestation: bool = False,
    layers: int = 1,
    labels: Mapping[str, str] | None = None,
) -> str:
    """Build a tiny image and push it to ``base_url`` as ``repository:tag``.

    - ``tag``: one tag, or several tags for the same image.
    - ``platforms``: ``os/arch[/variant]`` strings, one manifest each.
    - ``index``: push an index over the manifests (the default); with
      ``index=False`` and a single platform, push only that manifest.
    - ``seed``: mixed into the layer contents, so different seeds give different
      digests and the same seed gives the same digests.
    - ``media_types``: ``"oci"`` or ``"docker"`` (manifest list / schema 2).
    - ``attestation``: add a BuildKit-style ``unknown/unknown`` attestation
      manifest per platform to the index.
    - ``layers``: layers per platform.
    - ``labels``: added to every platform's config labels.

    Returns the digest of what the tag points at (the index, or the manifest).
    """
    tags = [tag] if isinstance(tag, str) else list(tag)
    image = build_image(
        platforms,
        seed=seed,
        index=index,
        media_types=media_types,
        attestation=attestation,
        layers=layers,
        labels=labels,
    )
    return push_built_image(base_url, repository, tags, image, auth=auth)


# pytest fixtures --------------------------------------------------------------------

AUTH_USERNAME = "brokkr-tester"
AUTH_PASSWORD = "hunter2-not-in-errors-7f3a"  # a value distinctive enough to grep for


def _pytest_registry(**options: str | bool) -> Iterator[RegistryServer]:
    if not Path(REGISTRY_BINARY).exists():
        pytest.skip(f"{REGISTRY_BINARY} is missing: {INSTALL_HINT}")
    with (
        tempfile.TemporaryDirectory(prefix="brokkr-registry-") as workdir,
        start_registry(Path(workdir), **options) as server,  # type: ignore[arg-type]
    ):
        yield server


if pytest is not None:

    @pytest.fixture(scope="session")
    def registry() -> Iterator[RegistryServer]:
        """An open registry on a free loopback port, shared by the session."""
        yield from _pytest_registry()

    @pytest.fixture(scope="session")
    def auth_registry() -> Iterator[RegistryServer]:
        """A registry that requires htpasswd Basic auth (``.auth`` holds the login)."""
        yield from _pytest_registry(username=AUTH_USERNAME, password=AUTH_PASSWORD)

    @pytest.fixture(scope="session")
    def deleting_registry() -> Iterator[RegistryServer]:
        """An open registry that accepts manifest deletion (``storage.delete.enabled``)."""
        yield from _pytest_registry(deletion=True)

"""skopeo (containers/image) as an independent judge of cosign-format signatures.

containers/image verifies cosign signatures with a `sigstoreSigned` policy
requirement (`keyPath`, `signedIdentity: matchRepository`) once
`registries.d` says `use-sigstore-attachments: true`. It needs skopeo 1.18 or
newer built with sigstore support: Debian 12's 1.9 has none, so `.ci/skopeo.sh`
puts Debian 13's into `.cache/skopeo/bin/skopeo`. Found, in order: the path in
`$BROKKR_SKOPEO`, that wrapper, a `skopeo` on PATH that is new enough.

Without one the tests skip and say how to get it; with `CI=true` they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / ".cache" / "skopeo" / "bin" / "skopeo"
MINIMUM = (1, 18)
SETUP_HINT = "run `bash .ci/skopeo.sh` (Debian 13's skopeo into .cache/skopeo)"


def skopeo_version(path: str | Path) -> tuple[int, int] | None:
    """`(major, minor)` of the skopeo at `path`, or None when it does not run."""
    try:
        result = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    match = re.search(r"skopeo version (\d+)\.(\d+)", result.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else None


def find_skopeo() -> tuple[Path | None, str]:
    """A skopeo with sigstore support, or None and why none was found."""
    candidates = []
    if os.environ.get("BROKKR_SKOPEO"):
        candidates.append(Path(os.environ["BROKKR_SKOPEO"]))
    candidates.append(WRAPPER)
    if on_path := shutil.which("skopeo"):
        candidates.append(Path(on_path))
    seen = []
    for candidate in candidates:
        version = skopeo_version(candidate)
        if version is not None and version >= MINIMUM:
            return candidate, ""
        seen.append(f"{candidate}: {'not runnable' if version is None else version}")
    return None, "no skopeo >= 1.18 with sigstore support (" + "; ".join(seen) + ")"


@dataclass(frozen=True)
class Skopeo:
    """A skopeo binary and a scratch directory for its policy and copies."""

    binary: Path
    workdir: Path

    def policy(self, registry: str, public_key_pem: bytes, *, name: str = "policy") -> Path:
        """A policy.json that admits images of `registry` only when signed by the key.

        Everything else is rejected; `registries.d` next to it turns on sigstore
        attachments (the `sha256-<hex>.sig` tags) for every registry.
        """
        directory = self.workdir / name
        directory.mkdir(parents=True, exist_ok=True)
        key_path = directory / "key.pub"
        key_path.write_bytes(public_key_pem)
        policy = {
            "default": [{"type": "reject"}],
            "transports": {
                "docker": {
                    registry: [
                        {
                            "type": "sigstoreSigned",
                            "keyPath": str(key_path),
                            "signedIdentity": {"type": "matchRepository"},
                        }
                    ]
                }
            },
        }
        path = directory / "policy.json"
        path.write_text(json.dumps(policy, indent=2))
        registries_d = directory / "registries.d"
        registries_d.mkdir(exist_ok=True)
        (registries_d / "default.yaml").write_text(
            "default-docker:\n  use-sigstore-attachments: true\n"
        )
        return path

    def copy(self, policy: Path, source: str, *, multi_arch: str = "system") -> tuple[bool, str]:
        """`skopeo copy docker://<source> oci:<scratch>` under `policy`: (accepted, stderr).

        With `multi_arch="all"` an index is copied whole (the policy judges the
        index's own signature); a platform manifest's digest is judged by its own.
        """
        target = self.workdir / "copies" / re.sub(r"[^A-Za-z0-9]", "_", source)
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                str(self.binary),
                "--policy",
                str(policy),
                "--registries.d",
                str(policy.parent / "registries.d"),
                "copy",
                "--quiet",
                # The policy judges the source; the oci: copy cannot store signatures.
                "--remove-signatures",
                "--src-tls-verify=false",
                "--multi-arch",
                multi_arch,
                f"docker://{source}",
                f"oci:{target}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "HOME": str(self.workdir)},
        )
        return result.returncode == 0, result.stderr.strip()


@pytest.fixture(scope="session")
def skopeo_binary() -> Path:
    """The skopeo to judge signatures with (skips, or fails with CI=true, without one)."""
    found, why = find_skopeo()
    if found is None:
        message = f"{why}: {SETUP_HINT}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture
def skopeo(skopeo_binary: Path, tmp_path: Path) -> Skopeo:
    """skopeo with a scratch directory for this test."""
    return Skopeo(skopeo_binary, tmp_path)

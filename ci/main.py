"""Brokkr's container images: build, tag, publish and inspect them.

Each function here is a thin, documented entry point; the work lives in the
private modules of this package (pure rules in `_tags`, `_platforms`,
`_reference`; Dagger stage builders in `_rust`, `_ui`, `_build`; the registry
client in `_registry`; publishing in `_publish`).
"""

from collections.abc import Sequence
from typing import Annotated

import dagger
from dagger import DefaultPath, Doc, Ignore, function, object_type

from ci import _tags

SOURCE_IGNORE = ["**/target", "**/node_modules", ".git", ".dagger", "sdk", "**/__pycache__"]


@object_type
class Brokkr:
    """Brokkr's image pipeline: brokkr-broker, brokkr-agent and brokkr-ui."""

    source: Annotated[
        dagger.Directory,
        DefaultPath("/"),
        Ignore(SOURCE_IGNORE),
        Doc(
            "The Brokkr source tree (a Cargo workspace with crates/brokkr-* and examples/ui). "
            "Defaults to the repository this module lives in; give a local path or a git URL."
        ),
    ]

    @function
    def tags(
        self,
        ref: Annotated[
            str,
            Doc("The git ref: refs/tags/v1.2.3, refs/heads/<branch> or refs/pull/<N>/merge"),
        ] = "",
        sha: Annotated[str, Doc("The commit sha (needed for branch pushes)")] = "",
        pr: Annotated[int | None, Doc("Pull request number, instead of a refs/pull ref")] = None,
        released: Annotated[
            Sequence[str],
            Doc("Versions already published (e.g. v1.2.0); moving tags never move backwards"),
        ] = (),
    ) -> list[str]:
        """The image tags a ref gets, most specific first.

        `dagger call tags --ref refs/tags/v1.2.3` prints `1.2.3 1.2 1 latest`;
        a pre-release gets only its version, a branch `<branch>` and
        `<branch>-sha-<7 chars>`, a pull request `pr-<N>`.
        """
        return [tag.name for tag in _tags.compute_tags(ref, sha=sha, pr=pr, released=released)]

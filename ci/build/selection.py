"""Which components a run builds: the pure rule applied to what the source holds.

`ci.rules.components.select_components` decides; this module reads the one
fact it needs from the source (is there a UI app, a folder with its
`package.json`, at the UI path) and nothing else. It runs before any build, so
a `ui` the source lacks is refused before any work.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagger

from ci.build.stages import DEFAULT_UI_PATH
from ci.build.ui import normalize_ui_path
from ci.rules.components import (
    Component,
    ComponentSelection,
    requested_components,
    select_components,
)

__all__ = ["select_for_source", "ui_app_present"]


async def ui_app_present(source: dagger.Directory, ui_path: str) -> bool:
    """Whether `source` holds a UI app at `ui_path`: the folder with its `package.json`."""
    return await source.exists(
        f"{ui_path}/package.json", expected_type=dagger.ExistsType.REGULAR_TYPE
    )


async def select_for_source(
    source: dagger.Directory,
    *,
    components: Sequence[Component] = (),
    component: Component | None = None,
    ui_path: str = "",
) -> ComponentSelection:
    """The components to build from `source`: `--components`/`--component`, else its default.

    `ui_path` empty means the default UI folder (`examples/ui`, the seed era's
    UI), used only when the source has it; a given `--ui-path` must hold a UI
    app. The source is read only when the answer depends on it (the default
    selection, `ui` asked for, or a `--ui-path` given).

    Raises:
        BrokkrError: the two component flags disagree, `ui_path` leaves the
            source, or the UI is asked for where the source holds none (the
            message names `--ui-path`).
    """
    requested = requested_components(components, component)
    given = bool(ui_path.strip())
    path = normalize_ui_path(ui_path) if given else DEFAULT_UI_PATH
    needs_ui = not requested or Component.UI in requested or given
    present = await ui_app_present(source, path) if needs_ui else False
    return select_components(requested, ui_present=present, ui_path=path, ui_path_given=given)

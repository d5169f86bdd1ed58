"""Roll back by switching a symlink or rewriting a small config file, atomically.

Exactly one of:

- `target_template` (e.g. `/models/{{to_version}}`): `path` becomes a symlink to the rendered
  target. A new symlink is made beside `path` and renamed over it (`os.replace`), so readers
  see the old or the new target, never none. By default the target must exist. The target,
  resolved with its symlinks, must stay inside the directory of the template (the folder
  before its first placeholder: `/models` for `/models/{{to_version}}`); `..` or a symlink
  that leads out is refused.
- `content_template`: the rendered text is written to a temporary file in the same folder,
  flushed and fsync'ed, given the old file's permissions, and renamed over `path`.

The folder is fsync'ed after the rename so the switch survives a crash. Writing what is
already there is a no-op (idempotent). In the templates `{{to_version}}` is the rollback
target (the decision's `to_version`, else `previous_version`); the other `{{placeholders}}`
are those of every actuator.

`verify` reads back (`os.readlink`, file contents). `current_version` is the basename of the
symlink's target (`/models/v6` → `v6`); for a config file it is not known (None).
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from watchdog.actuators.base import ActionContext, Actuator
from watchdog.actuators.templating import PLACEHOLDER, check_template, placeholder_names, render, with_rollback_version
from watchdog.config.fields import option
from watchdog.errors import ActuatorError


@dataclass(frozen=True)
class FileActuatorOptions:
    path: str = option(help="the symlink or file to switch")
    target_template: str | None = option(None, help="symlink target, e.g. /models/{{to_version}}")
    content_template: str | None = option(None, help="file contents, e.g. 'model_version: {{to_version}}\\n'")
    must_exist: bool = option(True, help="refuse to point the symlink at a target that does not exist")


class FileActuator(Actuator):
    Options = FileActuatorOptions

    def __init__(self, name: str, options: FileActuatorOptions):
        self.check(options)
        super().__init__(name, options)

    @staticmethod
    def check(options: FileActuatorOptions) -> None:
        if not options.path.strip():
            raise ValueError("path must name a file")
        if (options.target_template is None) == (options.content_template is None):
            raise ValueError("give exactly one of target_template (a symlink) and content_template (a file)")
        template = options.target_template if options.target_template is not None else options.content_template
        assert template is not None
        check_template(template, "target_template" if options.target_template is not None else "content_template")
        if options.target_template is not None and not options.target_template.strip():
            raise ValueError("target_template must not be empty")

    @property
    def _symlink(self) -> bool:
        return self.options.target_template is not None

    def _rendered(self, context: ActionContext) -> str:
        template = self.options.target_template if self._symlink else self.options.content_template
        assert template is not None
        if "to_version" in placeholder_names(template):
            context = with_rollback_version(context)  # "no version to roll back to" when neither is known
        rendered = render(template, context)
        if self._symlink:
            self._check_inside(template, rendered)
        return rendered

    def _check_inside(self, template: str, rendered: str) -> None:
        """The target must stay inside the directory of its template (the folder before the
        first placeholder), symlinks resolved: placeholder values come from outside."""
        first = PLACEHOLDER.search(template)
        if first is None:
            return  # nothing in the target comes from outside
        folder = Path(self.options.path).parent  # a relative target resolves beside the symlink
        base = os.path.realpath(os.path.join(folder, os.path.dirname(template[:first.start()])))
        resolved = os.path.realpath(os.path.join(folder, rendered))
        if resolved == base or os.path.commonpath([base, resolved]) != base:
            raise ActuatorError(f"symlink target {rendered} resolves to {resolved}, outside {base} (the directory of "
                                f"target_template {template}); refusing to switch {self.options.path}")

    def plan(self, context: ActionContext) -> str:
        if self._symlink:
            return f"point symlink {self.options.path} at {self._rendered(context)}"
        return f"rewrite {self.options.path} ({len(self._rendered(context).encode())} bytes, atomic rename)"

    def apply(self, context: ActionContext, stop: threading.Event) -> str:
        wanted = self._rendered(context)
        if stop.is_set():
            raise ActuatorError(f"interrupted by shutdown: {self.options.path} was not changed")
        path = Path(self.options.path)
        try:
            if self._symlink:
                return self._switch_symlink(path, wanted)
            return self._write_file(path, wanted)
        except OSError as exc:
            raise ActuatorError(f"cannot switch {path}: {exc.strerror or exc}") from None

    def verify(self, context: ActionContext, stop: threading.Event) -> str:
        wanted = self._rendered(context)
        path = Path(self.options.path)
        try:
            if self._symlink:
                now = os.readlink(path)
                if now != wanted:
                    raise ActuatorError(f"{path} points at {now}, expected {wanted}")
                return f"{path} → {wanted}"
            if path.read_text(encoding="utf-8") != wanted:
                raise ActuatorError(f"{path} does not hold the expected contents")
            return f"{path} holds the expected contents"
        except OSError as exc:
            raise ActuatorError(f"cannot read back {path}: {exc.strerror or exc}") from None

    def current_version(self, context: ActionContext) -> str | None:
        if not self._symlink:
            return None
        try:
            return os.path.basename(os.readlink(self.options.path).rstrip("/")) or None
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ActuatorError(f"cannot read symlink {self.options.path}: {exc.strerror or exc}") from None

    def _switch_symlink(self, path: Path, target: str) -> str:
        before = os.readlink(path) if path.is_symlink() else None
        if before == target:
            return f"{path} already points at {target}"
        if before is None and os.path.lexists(path):
            raise ActuatorError(f"{path} exists and is not a symlink; refusing to replace it")
        resolved = target if os.path.isabs(target) else os.path.join(path.parent, target)
        if self.options.must_exist and not os.path.exists(resolved):
            raise ActuatorError(f"symlink target {target} does not exist (set must_exist: false to allow it)")
        for _ in range(10):  # the temporary name is random; retry the unlikely collision
            temp = path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp"
            try:
                os.symlink(target, temp)
                break
            except FileExistsError:
                continue
        else:
            raise ActuatorError(f"cannot create a temporary symlink beside {path}")
        try:
            os.replace(temp, path)
        except OSError:
            os.unlink(temp)
            raise
        _fsync_dir(path.parent)
        return f"{path} → {target}" + (f" (was {before})" if before else "")

    def _write_file(self, path: Path, content: str) -> str:
        data = content.encode("utf-8")
        try:
            if path.read_bytes() == data:
                return f"{path} already holds the expected contents"
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(temp, mode)
            os.replace(temp, path)
        except BaseException:
            if os.path.lexists(temp):
                os.unlink(temp)
            raise
        _fsync_dir(path.parent)
        return f"rewrote {path} ({len(data)} bytes)"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

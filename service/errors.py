"""The service's errors. Those a user can cause are the engine's `UserError`, each with its
advice (`hint`) set where the cause is known.

No heavy imports: the CLI, the web page and the intake all raise and show these.
"""

from __future__ import annotations

from nst_engine.errors import UserError

DEFAULT_SIDECAR_HINT = "correct the sidecar as the message says and drop it again; see README 'The inbox contract'"


class StoreError(RuntimeError):
    """The job store refuses or cannot be used (a job moved the wrong way, a damaged or
    missing database); the message says which, in a line."""


class SidecarError(UserError):
    """A sidecar cannot become a job; the message says what to fix."""

    default_hint = DEFAULT_SIDECAR_HINT


class RefusedFile(SidecarError):
    """A file in the inbox the service will not open: a link leaving the inbox, a special
    file (FIFO, socket, device), a folder where a file is expected, or one over a size limit."""

    default_hint = ("drop a regular file: copy the picture itself into the inbox rather than a link to it "
                    "(links may point only to files inside the inbox)")

"""What every verb shares: the console, the user-error guard and the run summary.

User mistakes (missing files, bad CSVs, unknown names, a full disk) print one red line naming
the problem and exit with status 2, never a bare stack trace.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from funduslab.errors import DISK_ERRNOS, DiskWriteError

__all__ = ["USER_ERRORS", "console", "friendly", "print_run"]

console = Console()

USER_ERRORS = (ValueError, TypeError, FileNotFoundError, DiskWriteError)
_ERROR = "[bold red]error:[/]"


def _disk_message(err: OSError) -> str:
    """One line for an ``OSError`` of :data:`DISK_ERRNOS` that no funduslab writer wrapped."""
    reason = (err.strerror or str(err)).lower()
    if err.filename:
        return f"{reason}: {err.filename}"
    return f"{reason} (a file could not be written: free some space or write elsewhere)"


def _fail(label: str, message: str, code: int) -> typer.Exit:
    """Print ``label`` then ``message`` on one line (not wrapped, not read as markup); return
    the exit to raise."""
    console.print(f"{label} {escape(' '.join(message.split()))}", soft_wrap=True)
    return typer.Exit(code=code)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user errors into one clear line and exit code 2 (Ctrl-C: one line and 130).

    A full disk or a read-only folder counts as one: :class:`DiskWriteError` names the file, and
    a bare ``OSError`` with such an ``errno`` (a third-party writer) still gives one line.
    """

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as err:
            raise _fail(_ERROR, str(err), 2) from None
        except OSError as err:
            if err.errno not in DISK_ERRNOS:
                raise
            raise _fail(_ERROR, _disk_message(err), 2) from None
        except KeyboardInterrupt as err:  # Ctrl-C: what was kept; no traceback
            message = str(err).strip() or "stopped before anything was saved"
            raise _fail("[bold yellow]interrupted:[/]", message, 130) from None

    return wrapper


def print_run(run_dir: Path, what: str = "run folder") -> None:
    """The metrics table of a finished run folder, then where it is."""
    from funduslab.reporting.run_folder import read_metrics
    from funduslab.reporting.tables import metrics_table

    console.print(metrics_table(read_metrics(run_dir)))
    console.print(f"[green]{what}:[/] {run_dir}")

"""The reliability table, ``docs/reliability.md`` (issue 33, item 6).

Every fault and hostile-input case is a row here, as data: the case, the test that exercises it
(a pytest node id), the outcome, the message the user sees, and what is lost. Where the message
is cheap to produce (milliseconds: a truncated JPEG through the image reader, a CSV with the wrong
columns through its adapter, a full disk under ``atomic_write_bytes``...), :func:`render` calls the
real code in a temporary folder and writes the message it got, with that folder shown as
``<tmp>``; the expensive cases (a killed training run, two processes) are fixed descriptions.
``tests/test_reliability_doc.py`` renders the table again and compares it with the committed file,
so the table cannot drift from the code.

Regenerate with ``python -m funduslab.reporting.reliability --write``.
"""

from __future__ import annotations

import argparse
import errno
import io
import logging
import struct
import sys
import tempfile
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

DOC = Path("docs/reliability.md")
COMMAND = "python -m funduslab.reporting.reliability --write"
_EXCERPT = 200  # characters of a message shown in the table


@dataclass(frozen=True)
class Case:
    """One row: ``probe(tmp)`` returns the message the user sees (``None``: ``message`` is fixed)."""

    case: str
    test: str  # pytest node id, ``tests/...py::test_name``
    outcome: str
    message: str = ""
    probe: Callable[[Path], str] | None = None
    lost: str = "nothing"


# ------------------------------------------------------------------------------ cheap probes
def _error(call: Callable[[], object]) -> str:
    """``type: message`` of the exception ``call`` raises (an error if it raises none)."""
    try:
        call()
    except Exception as err:  # noqa: BLE001 - the message is what the table shows
        return f"{type(err).__name__}: {err}"
    raise AssertionError("expected an error, got none")


def _jpeg(tmp: Path, cut: bool) -> Path:
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[0:24, 0:32]
    pixels = np.stack([8 * xx % 256, 10 * yy % 256, np.full_like(xx, 120)], -1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    path = tmp / "cut.jpg"
    path.write_bytes(data[: len(data) * 2 // 3] if cut else data)
    return path


def _truncated_jpeg(tmp: Path) -> str:
    from funduslab.data.imageio import read_rgb

    path = _jpeg(tmp, cut=True)
    return _error(lambda: read_rgb(path))


def _text_as_png(tmp: Path) -> str:
    from funduslab.data.imageio import read_rgb

    path = tmp / "notes.png"
    path.write_bytes(b"patient 913, right eye\n" * 20)
    return _error(lambda: read_rgb(path))


def _bomb(tmp: Path) -> str:
    from funduslab.data.imageio import read_rgb

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 20_000, 20_000, 8, 2, 0, 0, 0)
    path = tmp / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return _error(lambda: read_rgb(path))


def _wrong_columns(tmp: Path) -> str:
    from funduslab.data.adapters import load_table

    (tmp / "labels.csv").write_text("name,label\na.jpg,1\n")
    return _error(lambda: load_table("generic_csv", tmp))


def _missing_csv(tmp: Path) -> str:
    from funduslab.data.adapters import load_table

    return _error(lambda: load_table("odir_course", tmp))


def _bad_config_value(tmp: Path) -> str:
    from funduslab.config import config_from_dict

    return _error(lambda: config_from_dict({"train": {"epochs": "many"}}))


def _deep_yaml(tmp: Path) -> str:
    from funduslab.config import load_config

    path = tmp / "c.yaml"
    path.write_text("[" * 3000 + "]" * 3000)
    return _error(lambda: load_config(path))


def _override_through_value(tmp: Path) -> str:
    from funduslab.config import config_from_dict

    return _error(lambda: config_from_dict({"data": 5}, {"data.root": "x"}))


class _FullDisk(io.RawIOBase):
    """A file every write of which fails as a full disk does."""

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def _full_disk(tmp: Path) -> str:
    from funduslab import config

    path = tmp / "metrics.json"
    config.atomic_write_bytes(path, b"old\n")
    real_open = open

    def full_open(file, mode="r", *args, **kwargs):  # noqa: ANN001
        return _FullDisk() if "w" in mode else real_open(file, mode, *args, **kwargs)

    with mock.patch.object(config, "open", full_open, create=True):
        message = _error(lambda: config.atomic_write_bytes(path, b"new" * 10_000))
    kept = path.read_bytes() == b"old\n"
    leftovers = sorted(p.name for p in tmp.iterdir())
    if not kept or leftovers != ["metrics.json"]:
        raise AssertionError(f"full disk: old file kept {kept}, files {leftovers}")
    return message


def _read_only(tmp: Path) -> str:
    from funduslab.config import config_from_dict, save_config

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(tmp / "run"))

    with mock.patch.object(tempfile, "mkstemp", refuse):
        return _error(lambda: save_config(config_from_dict({}), tmp / "run" / "config.yaml"))


def _busy(tmp: Path) -> str:
    from funduslab.runs.lock import run_folder_lock

    def second() -> None:
        with run_folder_lock(tmp / "run"):
            pass

    with run_folder_lock(tmp / "run"):
        return _error(second)


def _altered_record(tmp: Path) -> str:
    from funduslab.reporting.record import write_record
    from funduslab.runs import RunFolder

    run_dir = tmp / "run"
    (run_dir / "predictions").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("provenance:\n  label_names: [D]\n")
    (run_dir / "metrics.json").write_text('{"splits": {}}\n')
    (run_dir / "predictions" / "val.csv").write_text("id,p_D,D\na,0.25,0\n")
    record = write_record(run_dir, tmp / "record")
    (record / "predictions" / "val.csv").write_text("id,p_D,D\na,0.95,1\n")
    with _warnings("funduslab.runs.folder") as warned:
        folder = RunFolder(record)
        folder.metrics
        folder.predictions("val")
    if len(warned) != 1:
        raise AssertionError(f"altered record: expected one warning, got {warned}")
    return f"WARNING: {warned[0]}"


@contextmanager
def _warnings(logger: str):
    got: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                got.append(record.getMessage())

    log = logging.getLogger(logger)
    handler, level = Keep(), log.level
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    try:
        yield got
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


# ------------------------------------------------------------------------------ the cases
_IMAGES = "tests/data/test_hostile_images.py"
_CACHE = "tests/data/test_cache_integrity.py"
_DISK = "tests/test_disk_full.py"
_LOCK = "tests/training/test_run_lock.py"
_RESUME = "tests/training/test_resume_determinism.py"
_CONFIG = "tests/test_fuzz_config.py"

CASES: tuple[Case, ...] = (
    # --- killed runs
    Case("training killed from outside (SIGKILL / SIGTERM) mid-run, then the same command again",
         f"{_RESUME}::test_killed_from_outside_then_resumed_by_the_same_command",
         "the rerun resumes from the last checkpoint; final weights and metrics identical to an "
         "uninterrupted run", "(none: the rerun just continues)"),
    Case("Ctrl-C (SIGINT) mid-epoch, then resume",
         f"{_RESUME}::test_ctrl_c_mid_epoch_then_resume_gives_identical_weights_and_metrics",
         "the run stops cleanly; the resumed run gives identical weights and metrics",
         "(none: the rerun just continues)"),
    # --- two writers
    Case("a second process writes a run folder in use (`funduslab train` with the same --out/--name)",
         f"{_LOCK}::test_second_writer_is_refused_and_the_first_run_finishes_intact",
         "refused (CLI: exit 2, one line `error: run folder ...`); the first run finishes intact",
         probe=_busy),
    Case("the process holding a run folder's lock is killed",
         f"{_LOCK}::test_a_killed_holder_blocks_nobody_and_other_ranks_do_not_lock",
         "the lock dies with it; the next run proceeds", "(none)"),
    Case("a new run fails", f"{_LOCK}::test_a_failed_new_run_removes_its_folder_lock_file_included",
         "its folder is removed, lock file included", "the run's own error"),
    Case("two processes build the same image cache entry at once",
         f"{_CACHE}::test_second_process_waits_for_the_first_build_and_reuses_it",
         "the second waits for the first and reuses its entry", "(none)"),
    Case("two processes extract the same feature entry at once",
         f"{_CACHE}::test_second_process_waits_for_the_feature_entry_and_loads_it",
         "the second waits and loads the entry; identical features", "(none)"),
    # --- corrupt caches and records
    Case("image cache entry truncated, altered in place, or without its checksum file",
         f"{_CACHE}::test_damaged_image_entry_is_rebuilt_with_a_warning_naming_it",
         "one warning naming the entry (`bytes` / `SHA-256` / `no checksum`); the entry is "
         "decoded again, sealed, and equal to the original",
         "WARNING naming the damaged cache file"),
    Case("feature cache entry damaged",
         f"{_CACHE}::test_damaged_feature_entry_is_extracted_again_with_a_warning_naming_it",
         "one warning naming the entry; features extracted again", "WARNING naming the entry"),
    Case("a file of a saved record edited after it was written",
         f"{_CACHE}::test_an_altered_record_is_reported_by_name_when_read",
         "read as it is, with one warning naming the file", probe=_altered_record),
    # --- disk full, read-only
    Case("disk full while a file is written (`atomic_write_bytes`)",
         f"{_DISK}::test_atomic_write_on_a_full_disk_names_the_file_and_keeps_the_old_one",
         "DiskWriteError naming the file; the previous file kept, no temporary left",
         probe=_full_disk),
    Case("read-only output folder", f"{_DISK}::test_a_read_only_folder_names_the_file",
         "DiskWriteError naming the file; nothing written", probe=_read_only),
    Case("disk full under every run-folder writer",
         f"{_DISK}::test_every_run_folder_writer_fails_cleanly_and_keeps_the_good_file",
         "each fails naming its file; the good file kept", "cannot write FILE: no space left on "
         "device"),
    Case("disk full while a failed run is marked failed",
         f"{_DISK}::test_marking_a_failed_run_on_the_full_disk_keeps_the_runs_own_error",
         "the run's own error is raised, not the disk's", "the run's own error"),
    Case("disk full under an image cache", f"{_DISK}::test_a_cache_on_a_full_disk_leaves_no_file",
         "fails cleanly; no cache file left", "cannot write FILE: no space left on device"),
    Case("`funduslab synth` / `train` on a full disk",
         f"{_DISK}::test_cli_synth_on_a_full_disk_is_one_line_naming_the_file",
         "exit code non-zero, one line naming the file",
         "error: cannot write FILE: no space left on device"),
    # --- hostile input: images
    Case("truncated JPEG", f"{_IMAGES}::test_a_hostile_file_decodes_or_is_a_value_error_naming_it",
         "ValueError naming the file (reader and cache decoder alike)", probe=_truncated_jpeg),
    Case("text saved as .png",
         f"{_IMAGES}::test_a_hostile_file_decodes_or_is_a_value_error_naming_it",
         "ValueError naming the file", probe=_text_as_png),
    Case("decompression bomb (PNG header claiming 20000x20000)",
         f"{_IMAGES}::test_a_bomb_is_refused_from_its_header",
         "refused from its header, before any pixel is inflated", probe=_bomb),
    Case("fuzzed image bytes", f"{_IMAGES}::test_fuzzed_image_bytes_decode_or_name_the_file",
         "decodes to (H, W, 3) uint8, or ValueError naming the file", "(varies; names the file)"),
    # --- hostile input: label files
    Case("label CSV with the wrong columns",
         "tests/data/test_fuzz_adapters.py::test_fuzzed_label_csvs_load_or_raise_a_user_error",
         "ValueError listing the missing and the present columns", probe=_wrong_columns),
    Case("label CSV missing",
         "tests/data/test_fuzz_adapters.py::test_fuzzed_label_csvs_load_or_raise_a_user_error",
         "FileNotFoundError naming the file", probe=_missing_csv),
    Case("fuzzed CSV bytes, every layout",
         "tests/data/test_fuzz_adapters.py::test_fuzzed_csv_bytes_load_or_raise_a_user_error",
         "loads a sound table, or ValueError / FileNotFoundError with a message",
         "(varies; never empty)"),
    # --- hostile input: configuration
    Case("config value of the wrong type",
         f"{_CONFIG}::test_fuzzed_dicts_and_overrides_load_or_raise_value_error",
         "ValueError naming the field", probe=_bad_config_value),
    Case("config YAML nested 3000 deep",
         f"{_CONFIG}::test_hostile_config_files_are_one_value_error",
         "one ValueError naming the file", probe=_deep_yaml),
    Case("override through a scalar (`data.root` when `data: 5`)",
         f"{_CONFIG}::test_an_override_through_a_value_is_a_value_error",
         "ValueError", probe=_override_through_value),
    Case("unknown registry name (`--loss focall`)",
         "tests/test_cli_errors.py::test_unknown_loss_is_one_line_listing_the_losses_before_"
         "anything_loads",
         "exit 2, one line listing the valid names, before any data loads",
         "error: ... train.loss='focall' ... (the valid losses)"),
)


# ------------------------------------------------------------------------------ render
def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _message(case: Case) -> str:
    if case.probe is None:
        return case.message
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        message = case.probe(tmp)
        for form in {str(tmp.resolve()), str(tmp)}:
            message = message.replace(form, "<tmp>")
    message = " ".join(message.split())
    if len(message) > _EXCERPT:
        message = message[: _EXCERPT - 1].rstrip() + "…"
    return f"`{message}`" if "`" not in message else message


def rows() -> list[tuple[str, str, str, str, str]]:
    """``(case, test, outcome, message, lost)`` of every case, messages from the code."""
    return [(c.case, f"`{c.test}`", c.outcome, _message(c), c.lost) for c in CASES]


def render() -> str:
    """The markdown of ``docs/reliability.md``."""
    lines = [
        "# Reliability: faults and hostile input",
        "",
        "Every fault and hostile-input case funduslab is tested against, the test that exercises "
        "it, what happens, the message the user sees, and what is lost. This file is generated "
        f"by `{COMMAND}` from `src/funduslab/reporting/reliability.py`; messages marked as code "
        "are produced by calling the real code in a temporary folder (shown as `<tmp>`), the "
        "others are fixed descriptions of cases that need a killed process or a second one. "
        "`tests/test_reliability_doc.py` regenerates it and fails when it differs, when a named "
        "test does not exist, or when a row does not say what was lost. Do not edit by hand.",
        "",
        "| case | exercised by | outcome | message | lost |",
        "|---|---|---|---|---|",
    ]
    for row in rows():
        lines.append("| " + " | ".join(_cell(cell) for cell in row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {DOC}")
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        (args.root / DOC).write_text(text, encoding="utf-8")
        print(f"wrote {args.root / DOC} ({len(CASES)} rows)")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

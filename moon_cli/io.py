"""Artifact I/O shared by every stage: Parquet on disk, an Arrow IPC stream on ``-``.

- Reads validate against a contract and resolve relative path columns against the artifact's directory.
- Writes are atomic (temporary file in the target directory + rename), hold an exclusive lock on the output so
  that a second writer to it is refused at once, refuse to replace an existing output unless asked, store path
  columns relative to the output's directory when the file lies beneath it, and carry a manifest (stage,
  version, parameters, seed, input fingerprints) in the schema's key-value metadata.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from moon_cli import __version__
from moon_cli.contracts import Contract, check_schema, conform, standardize
from moon_cli.errors import MoonError, warn

STDIO = "-"
MANIFEST_KEY = b"moon.manifest"


def is_stdio(path) -> bool:
    return str(path) == STDIO


# --------------------------------------------------------------------------------------------- manifest
def fingerprint(path: str | os.PathLike) -> str:
    """A content fingerprint: sha256 of the whole file up to 64 MiB, else of size + head + tail."""
    if is_stdio(path):
        return "stdin"
    p = Path(path)
    if p.is_dir():
        return "dir:" + hashlib.sha256(
            "\n".join(f"{q.relative_to(p)}:{q.stat().st_size}" for q in sorted(p.rglob("*")) if q.is_file()).encode()
        ).hexdigest()[:16]
    size = p.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(p, "rb") as f:
        if size <= 64 << 20:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        else:
            h.update(f.read(8 << 20))
            f.seek(-(8 << 20), os.SEEK_END)
            h.update(f.read())
    return h.hexdigest()[:16]


def make_manifest(stage: str, params: dict | None = None, seed: int | None = None, inputs=()) -> dict:
    """The provenance record stored in every artifact this project writes (no timestamps: reproducible)."""
    return {
        "stage": stage,
        "version": __version__,
        "params": params or {},
        "seed": seed,
        "inputs": [{"path": str(p), "fingerprint": fingerprint(p)} for p in inputs],
    }


def read_manifest(schema: pa.Schema, source: str | None = None) -> dict:
    """The manifest in ``schema``'s metadata; {} when there is none. A damaged one is read as none (the table
    itself is fine), with a warning naming ``source``; what needs its contents then says what is missing."""
    raw = (schema.metadata or {}).get(MANIFEST_KEY)
    if not raw:
        return {}
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        manifest = exc
    if not isinstance(manifest, dict):
        warn(f"{source or 'input'}: its moon manifest (metadata key {MANIFEST_KEY.decode()}) is damaged "
             f"({manifest if isinstance(manifest, Exception) else 'not an object'}); reading the table without it")
        return {}
    return manifest


# --------------------------------------------------------------------------------------------- paths
def _map_string_column(col: pa.ChunkedArray | pa.Array, fn) -> pa.Array:
    """Apply a Python function to each distinct non-null string of a string or list<string> column."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        offsets = pc.subtract(arr.offsets, arr.offsets[0])
        values = _map_string_column(arr.flatten(), fn)
        return type(arr).from_arrays(offsets, values, mask=arr.is_null() if arr.null_count else None)
    if len(arr) == 0:
        return arr
    encoded = pc.dictionary_encode(arr)
    mapped = pa.array([None if v is None else fn(v) for v in encoded.dictionary.to_pylist()], pa.string())
    return mapped.take(encoded.indices)


def _is_text(t: pa.DataType) -> bool:
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)


def resolve_paths(table: pa.Table, columns, base_dir: Path, source: str = "input") -> pa.Table:
    """Make relative paths in ``columns`` absolute, relative to ``base_dir``; a path column that does not
    hold text is a one-line error naming ``source`` and the column."""
    base = str(Path(base_dir).resolve())
    for name in columns:
        if name in table.column_names and not _is_text(table.schema.field(name).type):
            raise MoonError(f"{source}: column '{name}' holds {table.schema.field(name).type}, expected file paths "
                            f"(text)")

    def absolute(p: str) -> str:
        return p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p))

    for name in columns:
        if name in table.column_names:
            idx = table.schema.get_field_index(name)
            table = table.set_column(idx, table.schema.field(idx), _map_string_column(table.column(idx), absolute))
    return table


def relativize_paths(table: pa.Table, columns, out_dir: Path) -> pa.Table:
    """Store paths that lie beneath ``out_dir`` relative to it, so the directory can move as a whole.

    Paths elsewhere are stored absolute, so the artifact can still find them from another directory.
    """
    root = str(Path(out_dir).resolve())

    def relative(p: str) -> str:
        p = os.path.abspath(p)  # in-memory paths are relative to the working directory
        if p == root or p.startswith(root + os.sep):
            return os.path.relpath(p, root)
        return p

    for name in columns:
        if name in table.column_names:
            idx = table.schema.get_field_index(name)
            table = table.set_column(idx, table.schema.field(idx), _map_string_column(table.column(idx), relative))
    return table


# --------------------------------------------------------------------------------------------- reading
@dataclass
class Artifact:
    table: pa.Table
    source: str
    base_dir: Path
    manifest: dict = field(default_factory=dict)


def _read_stdin_table(source: str) -> pa.Table:
    stream = sys.stdin.buffer
    if stream.isatty():
        raise MoonError("input '-' is a terminal: pipe an Arrow stream or Parquet file into it, or give a file path")
    if not hasattr(stream, "peek"):  # e.g. an in-memory stream under a test runner
        stream = io.BufferedReader(stream)
    try:
        if stream.peek(4)[:4] == b"PAR1":  # a Parquet file piped in: it needs seeking, so buffer it
            return pq.read_table(io.BytesIO(stream.read()))
        return pa.ipc.open_stream(stream).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise MoonError(f"{source}: stdin is not an Arrow IPC stream or Parquet file ({exc})") from None


def parquet_file(path) -> Path:
    """``path`` as a file to read Parquet from, or a one-line error (missing, or a directory)."""
    p = Path(path)
    if not p.exists():
        raise MoonError(f"{path}: no such file")
    if p.is_dir():
        raise MoonError(f"{path}: is a directory, expected a Parquet file")
    return p


def read_table(path, contract: Contract | None = None, columns=None) -> Artifact:
    """Read an artifact from a Parquet file (or ``-``), validate it and resolve its path columns."""
    source = "<stdin>" if is_stdio(path) else str(path)
    if is_stdio(path):
        table = _read_stdin_table(source)
        base_dir = Path.cwd()
    else:
        p = parquet_file(path)
        try:
            if contract is not None:
                check_schema(pq.read_schema(p), contract, source)
            table = pq.read_table(p, columns=columns)
        except (pa.ArrowInvalid, OSError) as exc:
            raise MoonError(f"{source}: not a readable Parquet file ({exc})") from None
        base_dir = p.resolve().parent
    manifest = read_manifest(table.schema, source)
    table = standardize(table)  # polars' large_string / large_list, views, dictionaries: the plain types
    if contract is not None:
        table = conform(table, contract, source)
        table = resolve_paths(table, contract.path_columns, base_dir, source)
    return Artifact(table=table, source=source, base_dir=base_dir, manifest=manifest)


def read_json_report(path, keys: tuple[str, ...], written_by: str) -> dict:
    """A JSON report another stage wrote, with ``keys`` present; a one-line error if it is missing or damaged."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MoonError(f"{path}: no such file; it is written by {written_by}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MoonError(f"{path}: not a readable JSON report ({exc}); re-run {written_by}") from None
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing:
        raise MoonError(f"{path}: missing {', '.join(repr(k) for k in missing)}; re-run {written_by}")
    return data


# --------------------------------------------------------------------------------------------- writing
def ensure_new_output(path, overwrite: bool) -> None:
    """Refuse to replace an existing output unless ``overwrite``; never touch it here."""
    if is_stdio(path):
        return
    p = Path(path)
    if p.exists() and not overwrite:
        raise MoonError(f"{p}: already exists; pass --overwrite to replace it (or choose another output)")


def lock_path(path) -> Path:
    target = Path(path)
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def output_lock(path) -> Iterator[None]:
    """Hold an exclusive lock on the output ``path`` for the block; a second writer is refused at once.

    The lock is a hidden ``.NAME.lock`` file beside the output (flock: released by the kernel when the
    process dies, so a killed run never leaves a stale lock). It is removed on release; a writer that
    opened the file just before it was removed sees a different inode and retries on the new file.
    """
    if is_stdio(path):
        yield
        return
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise MoonError(f"{path}: another moon process is writing this output right now (lock {lock}); "
                                f"wait for it to finish or choose another output") from None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file between our open and our lock: try again
    _remove_litter(Path(path))
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def user_mode(path: Path, directory: bool = False) -> None:
    """Give a temporary file / directory the mode any file the user writes gets (0666 / 0777 less the umask):
    mkstemp / mkdtemp make them 0600 / 0700, which teammates and workers running as another user cannot read."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def user_mode_tree(directory: Path) -> None:
    """Give the files under ``directory`` that a library wrote private (0600: safetensors, mkstemp) the mode
    any file the user writes gets; other modes are left as they are."""
    for p in Path(directory).rglob("*"):
        if p.is_file() and not p.is_symlink() and p.stat().st_mode & 0o777 == 0o600:
            user_mode(p)


def _remove_litter(target: Path) -> None:
    """Temporary files / directories an earlier writer of ``target`` left when it was killed. Only a holder of
    the output's lock calls this, so no live writer owns them."""
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*"):
        if stale.name.endswith((".tmp", ".old")):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    user_mode(Path(tmp))
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def ensure_new_dir(path, overwrite: bool) -> None:
    """Refuse a directory output that holds something unless ``overwrite`` (call it before long work too)."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise MoonError(f"{target}: exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise MoonError(f"{target}: directory is not empty; pass --overwrite to replace it")


@contextlib.contextmanager
def atomic_dir(path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; it replaces ``path`` only when the block succeeds.

    An existing non-empty ``path`` is refused without ``overwrite`` (and left untouched); a second writer to
    the same ``path`` is refused while the first holds it.
    """
    with output_lock(path):
        with _atomic_dir(path, overwrite) as tmp:
            yield tmp


@contextlib.contextmanager
def _atomic_dir(path, overwrite: bool) -> Iterator[Path]:
    target = Path(path)
    ensure_new_dir(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    target = target.resolve()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    user_mode(tmp, directory=True)
    try:
        yield tmp
        user_mode_tree(tmp)
        if target.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, trash / "old")
            os.replace(tmp, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _with_manifest(schema: pa.Schema, manifest: dict | None) -> pa.Schema:
    if manifest is None:
        return schema
    meta = dict(schema.metadata or {})
    meta[MANIFEST_KEY] = json.dumps(manifest, sort_keys=True).encode()
    return schema.with_metadata(meta)


class TableWriter:
    """Write record batches incrementally to Parquet (atomically) or to stdout as an Arrow IPC stream.

    Use as a context manager; on an exception the partial file is discarded and nothing is replaced.
    """

    def __init__(self, path, schema: pa.Schema, *, contract: Contract | None = None, manifest: dict | None = None,
                 overwrite: bool = False):
        self.path = path
        self.contract = contract
        self.schema = _with_manifest(schema, manifest)
        self.rows = 0
        self._stack = contextlib.ExitStack()
        if is_stdio(path):
            if sys.stdout.isatty():
                raise MoonError("refusing to write a binary Arrow stream to a terminal: pipe it or give -o FILE")
            self.out_dir = Path.cwd()
            self._writer = pa.ipc.new_stream(sys.stdout.buffer, self.schema)
            self._to_file = False
        else:
            self._stack.enter_context(output_lock(path))
            try:
                ensure_new_output(path, overwrite)
            except MoonError:
                self._stack.close()
                raise
            self.out_dir = Path(path).resolve().parent
            tmp = self._stack.enter_context(atomic_file(path))
            self._writer = pq.ParquetWriter(tmp, self.schema)
            self._to_file = True

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
        if self.contract is not None and self._to_file:  # a stream has no directory to be relative to
            table = relativize_paths(table, self.contract.path_columns, self.out_dir)
        table = table.cast(self.schema)  # keeps column order and types stable across batches
        if self._to_file:
            self._writer.write_table(table)
        else:
            self._writer.write(table)
        self.rows += table.num_rows

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self._writer.close()
        finally:
            if exc_type is None:
                self._stack.close()
            else:
                self._stack.__exit__(exc_type, exc, tb)
        if not self._to_file:
            sys.stdout.buffer.flush()
        return False


def write_table(table: pa.Table, path, *, contract: Contract | None = None, manifest: dict | None = None,
                overwrite: bool = False) -> int:
    """Validate ``table`` against ``contract`` and write it atomically to ``path`` (or stdout for ``-``)."""
    if contract is not None:
        table = conform(table, contract, str(path))
    with TableWriter(path, table.schema, contract=contract, manifest=manifest, overwrite=overwrite) as w:
        w.write(table)
    return w.rows

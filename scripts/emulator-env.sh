#!/usr/bin/env bash
# Creates .venv with the pinned BigQuery emulator and puts DuckDB's spatial extension where
# DuckDB looks for it (it is loaded at emulator start and cannot be downloaded here).
# Idempotent: does nothing when the virtualenv matches the requirements file.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
REQ=scripts/emulator-requirements.txt
STAMP="$VENV/.installed-$(sha256sum "$REQ" | cut -c1-16)"

if [ ! -f "$STAMP" ]; then
  echo "==> creating $VENV with the BigQuery emulator"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip >/dev/null 2>&1 || true
  "$VENV/bin/pip" install --quiet -r "$REQ"
  # SQLGlot's compiled build, the same code (parsing is two thirds of the emulator's time; about
  # three times faster compiled). Only as a wheel: without one for this platform the emulator
  # runs on the pure-Python parser, slower but alike.
  sqlglot=$("$VENV/bin/python" -c 'import sqlglot; print(sqlglot.__version__)')
  "$VENV/bin/pip" install --quiet --only-binary=:all: "sqlglotc==$sqlglot" \
    || echo "==> no compiled SQLGlot wheel for this platform: the emulator parses in pure Python"
  rm -f "$VENV"/.installed-*
  touch "$STAMP"
fi

# DuckDB's default extension folder for this DuckDB version and platform.
"$VENV/bin/python" - <<'PY'
import os, pathlib, shutil
import duckdb, duckdb_extension_spatial

version = "v" + duckdb.__version__
platform = duckdb.sql("PRAGMA platform").fetchone()[0]
src = pathlib.Path(duckdb_extension_spatial.__file__).parent / "extensions" / version / "spatial.duckdb_extension"
dst_dir = pathlib.Path.home() / ".duckdb" / "extensions" / version / platform
dst = dst_dir / "spatial.duckdb_extension"
if not src.exists():
    raise SystemExit(f"spatial extension not found in the wheel: {src}")
if not dst.exists() or dst.stat().st_size != src.stat().st_size:
    dst_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    print(f"==> installed DuckDB spatial extension into {dst_dir}")
PY

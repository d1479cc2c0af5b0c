"""The project's own code as a small zip, shipped beside the packed environment (never inside it: the env is keyed by
content and reused across jobs, the code changes with every edit).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

PROJECT_PACKAGES = ("yarn_app", "tfnode", "hdfs_io")


def build_code_zip(output: Path, root: Path | None = None) -> Path:
    """The project's own packages as a small zip (localized as an ARCHIVE folder on PYTHONPATH), with the native
    libraries ./build.sh setup built (hdfs_io's TF plugin and HDFS reader: same OS, Python and TF as the env)."""
    root = root or Path(__file__).resolve().parent.parent
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as zf:
        for pkg in PROJECT_PACKAGES:
            for pattern in ("*.py", "*.so", "*.cc", "*.rs", "*.patch", "Cargo.toml", "Cargo.lock"):
                for f in sorted((root / pkg).rglob(pattern)):
                    if "target" not in f.relative_to(root).parts:
                        zf.write(f, f.relative_to(root).as_posix())
    return output

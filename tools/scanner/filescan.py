"""Walk a file or directory tree and apply the secret and risky-code rules.

Symlinks are never followed (so a link cannot lead the scan out of the tree), binary
files (a NUL byte in the first 8 KiB) and files over the size cap are skipped, and
version-control directories are not entered. Blocking I/O: run it in a thread.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from schemas.tools.security_scanner import FileIssue
from tools.scanner.secrets import excerpt, find_hits

VCS_DIRS = frozenset({".git", ".hg", ".svn"})
BINARY_SNIFF_BYTES = 8192


@dataclass
class FileScanReport:
    """Issues found (capped at ``max_issues``) and counters."""

    issues: list[FileIssue] = field(default_factory=list)
    total_issues: int = 0
    files_scanned: int = 0
    files_skipped: int = 0


def _excluded(relative: str, patterns: list[str]) -> bool:
    parts = PurePosixPath(relative).parts
    for pattern in patterns:
        if fnmatch.fnmatchcase(relative, pattern):
            return True
        if any(fnmatch.fnmatchcase(part, pattern) for part in parts):
            return True
    return False


def scan_text(text: str, relative: str) -> list[FileIssue]:
    """Issues of one file's text, excerpts masked."""
    hits = find_hits(text, relative)
    spans = [h.secret_span for h in hits if h.secret_span is not None]
    return [
        FileIssue(
            file=relative,
            line=hit.line,
            rule=hit.rule.id,
            category=hit.rule.category,  # type: ignore[arg-type]
            severity=hit.rule.severity,  # type: ignore[arg-type]
            excerpt=excerpt(text, hit, spans),
        )
        for hit in hits
    ]


def _scan_file(
    path: Path, relative: str, report: FileScanReport, max_bytes: int, max_issues: int
) -> None:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > max_bytes:
            report.files_skipped += 1
            return
        data = path.read_bytes()
    except OSError:
        report.files_skipped += 1
        return
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        report.files_skipped += 1
        return
    report.files_scanned += 1
    issues = scan_text(data.decode("utf-8", errors="replace"), relative)
    report.total_issues += len(issues)
    room = max_issues - len(report.issues)
    if room > 0:
        report.issues.extend(issues[:room])


def scan_path(
    root: Path,
    *,
    exclude_patterns: list[str],
    max_file_bytes: int,
    max_files: int,
    max_issues: int,
) -> FileScanReport:
    """Scan ``root`` (a file or a directory tree); raises FileNotFoundError if absent."""
    report = FileScanReport()
    if not root.exists():
        raise FileNotFoundError(str(root))
    if root.is_file():
        _scan_file(root, root.name, report, max_file_bytes, max_issues)
        return report
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        # Prune in place so os.walk does not descend into excluded trees.
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in VCS_DIRS and not _excluded(f"{rel_dir}/{d}".lstrip("/"), exclude_patterns)
        )
        for name in sorted(filenames):
            relative = f"{rel_dir}/{name}".lstrip("/")
            if _excluded(relative, exclude_patterns) or seen >= max_files:
                report.files_skipped += 1
                continue
            seen += 1
            _scan_file(Path(dirpath, name), relative, report, max_file_bytes, max_issues)
    return report

"""Secret and risky-code rules, masking, and the tree walk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools.scanner.filescan import scan_path, scan_text
from tools.scanner.secrets import MASK, shannon_entropy

# Assembled at run time so this test file itself holds no scannable secret.
AWS_KEY_ID = "AKIA" + "Z7QW3RTY5UIOP2LK"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "Q9Zk2Lm8Xv"
GITHUB = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
SLACK = "xoxb-" + "1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"
PASSWORD = "S3cr3t-" + "Passw0rd!"
ENTROPY = "Zx9" + "Qw7Er5Ty3Ui1Op0AsDfGhJk"


def _rules(text: str, filename: str = "f") -> list[tuple[int, str]]:
    return [(i.line, i.rule) for i in scan_text(text, filename)]


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        (f'key_id = "{AWS_KEY_ID}"', "aws-access-key-id"),
        (f"aws_secret_access_key = {AWS_SECRET}", "aws-secret-access-key"),
        ("-----BEGIN RSA PRIVATE KEY-----", "private-key"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----", "private-key"),
        (f"token: {GITHUB}", "github-token"),
        (f"SLACK = '{SLACK}'", "slack-token"),
        (f'db_password = "{PASSWORD}"', "generic-password"),
        (f'"password": "{PASSWORD}"', "generic-password"),
        (f'api_key = "{ENTROPY}"', "high-entropy-secret"),
        ("result = eval(user_input)", "eval-call"),
        ("exec(code)", "exec-call"),
        ("subprocess.run(cmd, shell=True)", "subprocess-shell-true"),
        ("subprocess.Popen(\n    cmd,\n    shell=True,\n)", "subprocess-shell-true"),
        ("os.system('rm -rf ' + path)", "os-system"),
        ("obj = pickle.loads(blob)", "pickle-load"),
        ("cfg = yaml.load(fh)", "yaml-unsafe-load"),
        ("cfg = yaml.load(fh, Loader=yaml.Loader)", "yaml-unsafe-load"),
        ("requests.get(url, verify=False)", "tls-verify-disabled"),
        ("chmod -R 777 /srv", "chmod-777"),
        ("os.chmod(path, 0o777)", "chmod-777"),
    ],
)
def test_each_rule_fires(text: str, rule: str) -> None:
    assert rule in [r for _, r in _rules(text)]


@pytest.mark.parametrize(
    "text",
    [
        "model.eval()",  # a method, not the builtin
        "subprocess.run(['ls', '-l'], check=True)",
        "cfg = yaml.load(fh, Loader=yaml.SafeLoader)",
        "cfg = yaml.safe_load(fh)",
        'password = "${DB_PASSWORD}"',  # a reference, not a value
        'api_key = "aaaaaaaaaaaaaaaaaaaa"',  # low entropy
        "password = os.environ['DB_PASSWORD']",
        "chmod 755 /srv",
        "-----BEGIN PUBLIC KEY-----",
    ],
)
def test_safe_code_is_not_reported(text: str) -> None:
    assert _rules(text) == []


@pytest.mark.parametrize(
    ("filename", "text", "found"),
    [
        ("deploy.sh", f"export DB_PASSWORD={PASSWORD}", True),
        (".env", f"DB_PASSWORD={PASSWORD}", True),
        ("app.py", "DB_PASSWORD = get_secret()", False),  # code, not configuration
        ("values.yaml", f"db:\n  password: {PASSWORD}\n", True),
        ("values.yaml", "db:\n  password: ${DB_PASSWORD}\n", False),
        ("models.py", "password: Optional[str]\n", False),  # an annotation
    ],
)
def test_unquoted_passwords_only_in_configuration_files(
    filename: str, text: str, found: bool
) -> None:
    assert ("generic-password" in [r for _, r in _rules(text, filename)]) is found


def test_secret_values_are_masked_in_every_excerpt() -> None:
    text = f'x = 1\nrequests.get(u, verify=False, auth=("{AWS_KEY_ID}", ""))\n'
    issues = scan_text(text, "client.py")
    assert {(i.line, i.rule) for i in issues} == {
        (2, "tls-verify-disabled"),
        (2, "aws-access-key-id"),
    }
    for issue in issues:
        assert AWS_KEY_ID not in issue.excerpt
        assert MASK in issue.excerpt  # the risky-code issue masks the key on its line too


def test_one_value_is_reported_once_by_the_most_specific_rule() -> None:
    assert _rules(f'aws_secret_access_key = "{AWS_SECRET}"') == [(1, "aws-secret-access-key")]


def test_long_lines_are_cut_around_the_finding() -> None:
    text = "x" * 500 + f" password = '{PASSWORD}' " + "y" * 500
    [issue] = scan_text(text, "min.js")
    assert len(issue.excerpt) <= 200
    assert MASK in issue.excerpt and PASSWORD not in issue.excerpt


def test_entropy() -> None:
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy(ENTROPY) > 4.0


def test_tree_walk_skips_binary_large_excluded_and_symlinked_files(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text(f'PASSWORD = "{PASSWORD}"\nos.system(cmd)\n')
    (root / "src" / "blob.bin").write_bytes(b"\x00\x01" + PASSWORD.encode())
    (root / "big.txt").write_text(f'password = "{PASSWORD}"\n' + "x" * 5000)
    (root / "vendor").mkdir()
    (root / "vendor" / "lib.py").write_text("eval(x)\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text(f'password = "{PASSWORD}"\n')
    outside = tmp_path / "outside.py"
    outside.write_text("eval(outside)\n")
    os.symlink(outside, root / "link.py")
    os.symlink(tmp_path, root / "loop")  # a directory link out of the tree

    report = scan_path(
        root, exclude_patterns=["vendor"], max_file_bytes=1000, max_files=100, max_issues=100
    )
    assert {(i.file, i.line, i.rule) for i in report.issues} == {
        ("src/app.py", 1, "generic-password"),
        ("src/app.py", 2, "os-system"),
    }
    assert report.files_scanned == 1
    # blob.bin (binary), big.txt (size cap), link.py (symlink); the excluded vendor/ and
    # .git/ directories are pruned without being entered, and loop/ is never followed.
    assert report.files_skipped == 3
    assert report.total_issues == 2


def test_issue_cap_keeps_the_count(tmp_path: Path) -> None:
    (tmp_path / "many.py").write_text("eval(a)\n" * 10)
    report = scan_path(
        tmp_path, exclude_patterns=[], max_file_bytes=10_000, max_files=10, max_issues=3
    )
    assert len(report.issues) == 3
    assert report.total_issues == 10

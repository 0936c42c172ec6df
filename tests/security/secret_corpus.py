"""A corpus of planted secrets: 60 kinds, each a realistic (but fake) credential inside
the text it usually travels in. Bodies are drawn from a seeded generator, so a run is
reproducible and no real credential is in the repository."""

from __future__ import annotations

import base64
import random
import string
from dataclasses import dataclass

_ALNUM = string.ascii_letters + string.digits
_B64URL = _ALNUM + "-_"


@dataclass(frozen=True)
class Planted:
    """``text`` carries ``secrets`` (each must vanish from anything derived from it)."""

    kind: str
    text: str
    secrets: tuple[str, ...]


def _pick(rng: random.Random, alphabet: str, n: int) -> str:
    # Every body holds at least one digit and one upper-case letter where the alphabet
    # allows, so it cannot occur by coincidence in the surrounding words.
    body = "".join(rng.choice(alphabet) for _ in range(n))
    return body


def _pem(rng: random.Random, label: str) -> tuple[str, tuple[str, ...]]:
    lines = [base64.b64encode(rng.randbytes(48)).decode() for _ in range(4)]
    block = f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"
    return block, tuple(lines)


def corpus(seed: int = 14) -> list[Planted]:
    """The planted secrets (at least the 50 kinds the attack run used)."""
    rng = random.Random(seed)
    r = lambda alphabet, n: _pick(rng, alphabet, n)  # noqa: E731
    hexd = string.hexdigits[:16]
    out: list[Planted] = []

    def add(kind: str, template: str, *secrets: str) -> None:
        out.append(Planted(kind, template.format(*secrets), secrets))

    add("bearer header", "Authorization: Bearer {}", r(_B64URL, 40))
    add("token header", "Authorization: Token {}", r(_ALNUM, 40))
    short = base64.b64encode(b"u:pw9").decode()
    add("short basic header", "curl -H 'Authorization: Basic {}' https://x", short)
    add(
        "basic header",
        "Authorization: Basic {}",
        base64.b64encode(f"deploy:{r(_ALNUM, 20)}".encode()).decode(),
    )
    add("url password", "connecting to postgres://app:{}@db:5432/app", r(_ALNUM, 16))
    add(
        "url password with slash",
        "fetch https://bot:{}@git.example.com/r.git failed",
        r(_ALNUM, 6) + "/" + r(_ALNUM, 6),
    )
    add(
        "url password with hash",
        "GET https://svc:{}@api.example.com/v1 -> 401",
        r(_ALNUM, 6) + "#" + r(_ALNUM, 6),
    )
    add("url password empty user", "redis://:{}@cache:6379/0 refused", r(_ALNUM, 18))
    for label in (
        "RSA PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
        "EC PRIVATE KEY",
        "PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
        "DSA PRIVATE KEY",
        "PGP PRIVATE KEY BLOCK",
    ):
        block, lines = _pem(rng, label)
        out.append(Planted(f"pem {label.lower()}", f"key file content:\n{block}\n", lines))
    add("cookie header", "Cookie: session={}; theme=dark", r(_ALNUM, 32))
    add("set-cookie header", "Set-Cookie: sid={}; Path=/; HttpOnly", r(_ALNUM, 32))
    add("mysql -p", "ran: mysql -uroot -p{} -h db", r(_ALNUM, 14))
    add("--password in a string", "deploy.sh --user admin --password {} --yes", r(_ALNUM, 14))
    add("--password=", "helm upgrade --password={} web", r(_ALNUM, 14))
    add("passphrase:", "passphrase: {}", r(_ALNUM, 18))
    add("env password assignment", "export DB_PASSWORD={}", r(_ALNUM, 18))
    add("env secret assignment", "AWS_SECRET_ACCESS_KEY={} in env", r(_ALNUM + "/+", 40))
    add("env token assignment", "GITHUB_TOKEN={} make release", r(_ALNUM, 30))
    add("json password", 'body: {{"password": "{}"}}', r(_ALNUM, 16))
    add("query password", "login failed: password={}&user=bob", r(_ALNUM, 12))
    add("api_key assignment", "api_key={}", r(_ALNUM, 32))
    add("client_secret", "client_secret: {}", r(_ALNUM, 32))
    add("x-api-key header", "X-Api-Key: {}", r(_ALNUM, 32))
    add("private-token header", "PRIVATE-TOKEN: {}", r(_ALNUM, 24))
    add(
        "slack webhook url",
        "posting to https://hooks.slack.com/services/T{}/B{}/{}",
        r(string.ascii_uppercase + string.digits, 9),
        r(string.ascii_uppercase + string.digits, 9),
        r(_ALNUM, 24),
    )
    add(
        "slack bot token",
        "slack said invalid_auth for xoxb-{}-{}-{}",
        r(string.digits, 12),
        r(string.digits, 13),
        r(_ALNUM, 24),
    )
    add(
        "slack app token",
        "xapp-1-A{}-{}-{}",
        r(string.ascii_uppercase + string.digits, 10),
        r(string.digits, 13),
        r(hexd, 64),
    )
    add("azure devops pat", "ado pat {} expired", r(string.ascii_lowercase + "234567", 52))
    add("azure devops pat (new format)", "using {}", r(_ALNUM, 76) + "AZDO" + r(_ALNUM, 4))
    add("gitlab pat", "glpat-{}", r(_B64URL, 20))
    add("gitlab runner token", "runner registered with glrt-{}", r(_B64URL, 20))
    add("gitlab deploy token", "gldt-{}", r(_B64URL, 20))
    add("stripe live secret", "stripe: sk_live_{}", r(_ALNUM, 24))
    add("stripe test secret", "stripe: sk_test_{}", r(_ALNUM, 24))
    add("stripe restricted", "rk_live_{}", r(_ALNUM, 24))
    add("stripe webhook secret", "whsec_{}", r(_ALNUM, 32))
    add("google api key", "maps key AIza{}", r(_B64URL, 35))
    add("google oauth secret", "GOCSPX-{}", r(_B64URL, 28))
    add("google oauth token", "ya29.{}", r(_B64URL, 60))
    add("openai project key", "OPENAI sk-proj-{}", r(_B64URL, 74))
    add("openai legacy key", "sk-{}T3BlbkFJ{}", r(_ALNUM, 20), r(_ALNUM, 20))
    add("anthropic key", "sk-ant-api03-{}", r(_B64URL, 93))
    add("hugging face token", "HF hub token hf_{}", r(_ALNUM, 34))
    add("sendgrid key", "SG.{}.{}", r(_B64URL, 22), r(_B64URL, 43))
    add(
        "azure sas sig",
        "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&se=2026&sig={}",
        r(_ALNUM + "%", 43) + "%3D",
    )
    add(
        "azure storage key",
        "DefaultEndpointsProtocol=https;AccountName=a;AccountKey={};",
        base64.b64encode(rng.randbytes(64)).decode(),
    )
    add("aws access key id", "key AKIA{}", r(string.ascii_uppercase + string.digits, 16))
    add(
        "aws secret beside id",
        "AKIA{} {}",
        r(string.ascii_uppercase + string.digits, 16),
        r(_ALNUM + "/+", 40),
    )
    add("github classic token", "ghp_{}", r(_ALNUM, 36))
    add("github fine-grained", "github_pat_{}", r(_ALNUM + "_", 82))
    add("github app token", "ghs_{}", r(_ALNUM, 36))
    add("jwt", "token eyJ{}.eyJ{}.{}", r(_B64URL, 30), r(_B64URL, 40), r(_B64URL, 43))
    add("npm token", "//registry.npmjs.org/:_authToken=npm_{}", r(_ALNUM, 36))
    add("pypi token", "pypi-AgEIcHlwaS5vcmc{}", r(_B64URL, 80))
    add("twilio key", "SK{}", r(hexd.lower(), 32))
    add("telegram bot token", "bot{}:{}", r(string.digits, 10), r(_B64URL, 35))
    add("discord bot token", "M{}.{}.{}", r(_B64URL, 23), r(_B64URL, 6), r(_B64URL, 27))
    add("mailchimp key", "{}-us14", r(hexd.lower(), 32))
    add("square oauth secret", "sq0csp-{}", r(_B64URL, 43))
    add("digitalocean token", "dop_v1_{}", r(hexd.lower(), 64))
    add("vault token", "X-Vault-Token hvs.{}", r(_B64URL, 24))
    add("databricks token", "dapi{}", r(hexd.lower(), 32))
    add(
        "docker auth json",
        '"auths": {{"r.io": {{"auth": "{}"}}}}',
        base64.b64encode(f"u:{r(_ALNUM, 16)}".encode()).decode(),
    )
    return out

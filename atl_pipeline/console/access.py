"""Who may use the console, from domains.yml's `operators` and `service_accounts`.

Once operators are declared the console's front speaks HTTPS under `console.hostname` (Caddy's
internal CA) and asks everyone to sign in (HTTP basic auth against bcrypt hashes, which Caddy
checks itself). A viewer reaches a Dagster webserver started with `--read-only`, which refuses
every mutation; an operator reaches the full one through the auditor (auditor.py), which records
each change asked for. Programs sign in with their account's name and token; forges sign their
push notifications with their webhook secret (atl_pipeline/webhooks.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import bcrypt

from atl_pipeline.config import Config
from atl_pipeline.errors import AtlError
from atl_pipeline.secrets import SECRET_REF, SecretError, resolve

TOKEN_COST = 10  # bcrypt's cost for the tokens hashed at start; Caddy keeps what it checked in its hash cache
_BCRYPT = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")


class AccessError(AtlError):
    """An account's secret cannot be read."""


@dataclass(frozen=True)
class Access:
    hostname: str
    accounts: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (role, bcrypt hash)
    webhooks: dict[str, str] = field(default_factory=dict)  # a forge's account -> its secret
    programs: frozenset[str] = frozenset()  # the accounts that sign in with a token

    @property
    def signs_in(self) -> bool:
        return bool(self.accounts)

    def named(self, role: str) -> list[str]:
        return sorted(name for name, (has, _) in self.accounts.items() if has == role)


def access_of(config: Config | None, environ: Mapping[str, str] = os.environ) -> Access:
    """The accounts with their secrets read from the environment; none without a configuration."""
    if config is None:
        return Access("localhost")
    try:
        accounts = {name: (person.role, _hash(name, resolve(person.password_hash, environ)
                                               if SECRET_REF.fullmatch(person.password_hash) else person.password_hash))
                    for name, person in config.operators.items()}
        programs = {name: account for name, account in config.service_accounts.items() if account.token}
        accounts |= {name: (account.role, bcrypt.hashpw(resolve(account.token, environ).encode(),
                                                       bcrypt.gensalt(TOKEN_COST)).decode())
                     for name, account in programs.items()}
        webhooks = {name: resolve(account.webhook_secret, environ)
                    for name, account in config.service_accounts.items() if account.webhook_secret}
    except SecretError as error:
        raise AccessError(str(error)) from None
    return Access(config.console_hostname, accounts, webhooks, frozenset(programs))


def _hash(name: str, value: str) -> str:
    if not _BCRYPT.fullmatch(value):
        raise AccessError(f"operator {name!r}: the variable holds no bcrypt hash (`atl utils hash-password` prints "
                          "one); it must never hold the password itself")
    return value


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()

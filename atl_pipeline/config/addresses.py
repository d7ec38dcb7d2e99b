"""Addresses and paths written in domains.yml: parsed, their parts checked, credentials refused.

A credential never belongs in domains.yml (it is read by people and kept in git): an address
that holds one is refused, and the finding names the field, never the value. Paths are judged
normalized, as the programs that use them will read them.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from urllib.parse import urlsplit

from atl_pipeline.config.names import normalize_hostname

CREDENTIALS = ("holds credentials (credentials removed from this message): give them through the environment "
               "(an env: reference, or the tool's own variables), never in domains.yml")
SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")


def check_url(value: str) -> str:
    """An http(s) URL with a host name, a port from 1 to 65535 if any, and no credentials."""
    if "@" in value.split("?")[0].split("#")[0]:
        raise ValueError(f"the URL {CREDENTIALS}")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError("the URL's port must be a number from 1 to 65535") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("write an http:// or https:// URL with a host name")
    if port == 0:
        raise ValueError("the URL's port must be a number from 1 to 65535")
    _check_host(parts.hostname)
    return value


def check_host_port(value: str) -> str:
    """`host:port`, the port from 1 to 65535."""
    if "@" in value:
        raise ValueError(f"the address {CREDENTIALS}")
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("write host:port, the port a number from 1 to 65535")
    _check_host(host.strip("[]"))
    return value


def check_restic_address(value: str) -> str:
    """A restic backend's address (`sftp:user@host:/path`, `s3:https://host/bucket`...) without credentials:
    no `user:password@` in the sftp form, no user part in a URL."""
    backend, _, rest = value.partition(":")
    if re.match(r"[^@/]*:[^@/]*@", rest) or re.search(r"//[^/]*@", rest):
        raise ValueError(f"the repository's address {CREDENTIALS}")
    if rest.startswith(("http://", "https://")):
        check_url(rest)
    return value


def check_absolute_folder(value: str) -> str:
    """An absolute path that is what it says: no `.` or `..` part, not `/` nor a system folder."""
    parts = value.split("/")[1:]
    if any(part in (".", "..") for part in parts):
        raise ValueError("write the path without . or .. parts (it is used as written)")
    if value == "/" or _in_system_folder(value):
        raise ValueError(f"{value[:40]} is / or a system folder ({', '.join(SYSTEM_FOLDERS)}): choose a folder of "
                         "the service's own")
    return value


def check_project_folder(value: str) -> str:
    """A folder for the project's data: absolute, or relative to the project; never `~` (not expanded),
    `/`, a system folder, the project itself or a folder that holds it."""
    if value.startswith("~"):
        raise ValueError("~ is not expanded here: write the folder's absolute path, or one relative to the project")
    normalized = posixpath.normpath(value)
    if normalized == "/" or _in_system_folder(normalized):
        raise ValueError("the folder is / or a system folder: choose a folder of its own")
    if all(part in (".", "..") for part in normalized.split("/")):
        raise ValueError("the folder is the project's, or a folder that holds it: choose a folder of its own")
    return value


def _check_host(host: str) -> None:
    """A host name, or an IP address."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        normalize_hostname(host)


def _in_system_folder(path: str) -> bool:
    return any(path == folder or path.startswith(f"{folder}/") for folder in SYSTEM_FOLDERS)

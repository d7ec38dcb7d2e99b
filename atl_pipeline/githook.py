"""`atl utils git-hook install`: a repository's post-receive hook that tells the pipeline of each push.

The hook is a Python script of the standard library only (the git server may have nothing else),
so it signs its notification itself, the way atl_pipeline/webhooks.py checks it. Its secret is in
a file beside it, readable by the repository's owner only, or in ATL_WEBHOOK_SECRET when git runs
hooks with it set. A hook cannot refuse a push that is already received: when the pipeline does
not answer, it says so, and the git_push sensor deploys the push at its next poll.
"""

from __future__ import annotations

import os
from pathlib import Path

from atl_pipeline.errors import AtlError
from atl_pipeline.files import replace_file

HOOK = "post-receive"
SECRET_FILE = "atl-webhook.secret"
MARK = "# installed by `atl utils git-hook install`"

SCRIPT = '''#!/usr/bin/env python3
{mark}: tells the pipeline at URL of each push, at once
import hashlib, hmac, json, os, pathlib, sys, time, urllib.error, urllib.request, uuid

URL = {url!r}
here = pathlib.Path(__file__).resolve().parent
try:
    secret = os.environ.get("ATL_WEBHOOK_SECRET") or (here / {secret_file!r}).read_text().strip()
except OSError as error:
    sys.exit(f"atl: no secret to sign the push with ({{error}}); it deploys at the pipeline's next poll")
pushed = [line.split() for line in sys.stdin if line.strip()]
body = json.dumps({{"refs": [{{"before": b, "after": a, "ref": r}} for b, a, r in pushed]}}).encode()
timestamp = str(int(time.time()))
signature = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
request = urllib.request.Request(URL, data=body, method="POST", headers={{
    "Content-Type": "application/json", "X-Atl-Signature": signature, "X-Atl-Timestamp": timestamp,
    "X-Atl-Delivery": str(uuid.uuid4())}})
try:
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.load(response)
    runs = answer.get("launched") or []
    print("atl: " + ("deploying in run " + ", ".join(runs) if runs else answer.get("reason") or "nothing to deploy"))
except (urllib.error.URLError, OSError, ValueError) as error:
    detail = error.read().decode(errors="replace") if isinstance(error, urllib.error.HTTPError) else error
    print(f"atl: the pipeline at {{URL}} was not told ({{detail}}); it deploys the push at its next poll")
'''


class HookError(AtlError):
    """The hook cannot be installed in that repository."""


def install(repository: Path, url: str, secret: str) -> Path:
    """Write the post-receive hook of `repository` (bare, or a working tree's .git) and its secret;
    return the hook's path. A post-receive hook of someone else's is never overwritten."""
    hooks = _hooks_folder(repository)
    hook = hooks / HOOK
    if hook.exists() and MARK not in hook.read_text(errors="replace"):
        raise HookError(f"{hook} exists and is not atl's: merge it by hand (its script: `atl utils git-hook "
                        "install --print`), or move it away and install again")
    secret_path = hooks / SECRET_FILE
    replace_file(secret_path, secret + "\n", mode=0o600)
    replace_file(hook, script(url), mode=0o755)
    return hook


def script(url: str) -> str:
    return SCRIPT.format(mark=MARK, url=url, secret_file=SECRET_FILE)


def _hooks_folder(repository: Path) -> Path:
    for git_dir in (repository / ".git", repository):
        if (git_dir / "objects").is_dir() and (git_dir / "refs").is_dir():
            hooks = git_dir / "hooks"
            hooks.mkdir(exist_ok=True)
            if not os.access(hooks, os.W_OK):
                raise HookError(f"{hooks} is not writable by this user: install the hook as the repository's owner")
            return hooks
    raise HookError(f"{repository} is not a git repository (no objects/ and refs/ in it or in its .git)")

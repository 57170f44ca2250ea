"""A client of the OCI distribution API: what pushing and pulling an image needs, no daemon.

Blobs are uploaded with one POST and one monolithic PUT (or mounted from another repository of
the same registry), manifests are PUT by tag or digest and read back by digest. Every byte read
is checked against the digest it was asked by. Credentials are a user and password given by the
caller or the ``auths`` entry of the Docker config (``$DOCKER_CONFIG/config.json``, else
``~/.docker/config.json``); a registry that asks for a bearer token gets one from its realm
(the token flow of the distribution spec), one that asks for Basic auth gets it on each request.
Loopback registries are spoken to over HTTP, every other one over HTTPS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from modelyard.errors import InvalidReference, RegistryError
from modelyard.images.oci import DOCKER_LIST, DOCKER_MANIFEST, INDEX, MANIFEST, sha256_digest

ACCEPT_MANIFESTS = ", ".join([MANIFEST, INDEX, DOCKER_MANIFEST, DOCKER_LIST])
_REPO = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST = re.compile(r"^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::\d{1,5})?$")
LOOPBACK = ("localhost", "127.0.0.1", "[::1]")


@dataclass(frozen=True)
class ImageRef:
    """``HOST[:PORT]/REPO[:TAG][@sha256:…]``: an image in a registry."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        value = text.strip()
        name, _, digest = value.partition("@")
        host, slash, rest = name.partition("/")
        if not slash or not ("." in host or ":" in host or host == "localhost"):
            raise InvalidReference(
                f"{text!r} names no registry: write HOST[:PORT]/REPOSITORY[:TAG][@sha256:...]"
            )
        repo, tag = rest, None
        if ":" in rest.rsplit("/", 1)[-1]:
            repo, _, tag = rest.rpartition(":")
        if not _HOST.match(host):
            raise InvalidReference(f"{text!r}: {host!r} is not a registry host")
        if not _REPO.match(repo) or len(repo) > 255:
            raise InvalidReference(
                f"{text!r}: {repo!r} is not a repository (lower-case letters, digits, . _ - /)"
            )
        if tag is not None and not _TAG.match(tag):
            raise InvalidReference(f"{text!r}: {tag!r} is not a tag")
        if digest and not _DIGEST.match(digest):
            raise InvalidReference(f"{text!r}: {digest!r} is not a sha256 digest")
        return cls(host, repo, tag, digest or None)

    @property
    def reference(self) -> str:
        """What the manifest is fetched by: the digest when there is one, else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> ImageRef:
        return ImageRef(self.host, self.repository, None, digest)

    def __str__(self) -> str:
        out = f"{self.host}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def docker_config_credentials(
    host: str, environ: Mapping[str, str] | None = None
) -> tuple[str, str] | None:
    """The user and password the Docker config stores for ``host`` (``auths``), if any."""
    env = os.environ if environ is None else environ
    folder = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else Path.home() / ".docker"
    try:
        data = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    entry = (data.get("auths") or {}).get(host) or {}
    auth = entry.get("auth") if isinstance(entry, dict) else None
    if not auth:
        return None
    try:
        user, _, password = base64.b64decode(auth).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if user else None


@dataclass
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


class Registry:
    """One registry host; credentials are used only when the registry asks for them."""

    def __init__(
        self,
        host: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 300.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        local = host.rsplit(":", 1)[0] in LOOPBACK or host in LOOPBACK
        self.base = f"{'http' if local else 'https'}://{host}"
        self.timeout = timeout
        if password is not None and not username:
            raise RegistryError("a password was given without a user name (--username)")
        self._creds = (
            (username, password)
            if username and password is not None
            else docker_config_credentials(host, environ)
        )
        self._auth: dict[str, str] = {}  # scope -> Authorization header value

    # -- transport ------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | IO[bytes] | None = None,
        ok: tuple[int, ...] = (200,),
        sink: _Sink | None = None,
    ) -> Response:
        """One request, authenticated the way the registry asks; retried once after a 401."""
        full = url if url.startswith(("http://", "https://")) else self.base + url
        for attempt in (1, 2):
            if hasattr(body, "seek"):
                body.seek(0)  # type: ignore[union-attr]
            req = urllib.request.Request(full, data=body, method=method)
            for key, value in (headers or {}).items():
                req.add_header(key, value)
            if scope in self._auth:
                # unredirected: never sent on to a blob store the registry redirects to
                req.add_unredirected_header("Authorization", self._auth[scope])
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    if sink is not None:
                        for chunk in iter(lambda: resp.read(1 << 20), b""):
                            sink.write(chunk)
                        data = b""
                    else:
                        data = resp.read()
                    status, hdrs = resp.status, dict(resp.headers.items())
            except urllib.error.HTTPError as exc:
                status, hdrs = exc.code, dict(exc.headers.items())
                data = exc.read()
                exc.close()
            except OSError as exc:
                reason = getattr(exc, "reason", exc)
                raise RegistryError(f"registry {self.host} does not answer ({reason})") from exc
            if status == 401 and attempt == 1:
                self._authenticate(hdrs, scope)
                continue
            if status not in ok:
                raise self._error(method, full, status, data)
            return Response(status, hdrs, data)
        raise AssertionError("unreachable")

    def _authenticate(self, headers: Mapping[str, str], scope: str) -> None:
        challenge = _header(headers, "WWW-Authenticate") or ""
        scheme, _, params = challenge.partition(" ")
        if self._creds is None and scheme.lower() == "basic":
            raise RegistryError(
                f"registry {self.host} needs credentials: pass --username and "
                "--password-stdin, or log in with 'docker login'"
            )
        if scheme.lower() == "basic":
            user, password = self._creds or ("", "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self._auth[scope] = f"Basic {token}"
            return
        if scheme.lower() != "bearer":
            raise RegistryError(f"registry {self.host} asks for unsupported auth {challenge!r}")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        realm = fields.get("realm")
        if not realm or not realm.startswith(("https://", "http://")):
            raise RegistryError(f"registry {self.host} sent a bearer challenge without a realm")
        query = {"service": fields.get("service", ""), "scope": fields.get("scope", scope)}
        req = urllib.request.Request(f"{realm}?{urllib.parse.urlencode(query)}")
        if self._creds is not None:
            user, password = self._creds
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            req.add_unredirected_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                answer = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            exc.close()
            raise RegistryError(
                f"registry {self.host} refused the credentials (token service: HTTP {exc.code})"
            ) from None
        except (OSError, ValueError) as exc:
            raise RegistryError(f"registry {self.host}'s token service failed: {exc}") from exc
        bearer = answer.get("token") or answer.get("access_token")
        if not bearer:
            raise RegistryError(f"registry {self.host}'s token service returned no token")
        self._auth[scope] = f"Bearer {bearer}"

    def _error(self, method: str, url: str, status: int, body: bytes) -> RegistryError:
        detail = ""
        try:
            errors = json.loads(body).get("errors") or []
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        except (ValueError, AttributeError):
            detail = body[:200].decode(errors="replace").strip()
        path = urllib.parse.urlsplit(url).path
        if status == 401:
            return RegistryError(
                f"registry {self.host} refused the credentials for {method} {path}"
                + (f" ({detail})" if detail else "")
            )
        return RegistryError(
            f"registry {self.host} answered {status} to {method} {path}"
            + (f": {detail}" if detail else "")
        )

    # -- the API ------------------------------------------------------------------------------
    @staticmethod
    def _scope(repo: str, push: bool) -> str:
        return f"repository:{repo}:{'pull,push' if push else 'pull'}"

    def ping(self) -> None:
        """``GET /v2/``: raises unless the registry answers (a 401 counts as an answer)."""
        try:
            self.request("GET", "/v2/", scope="", ok=(200, 401))
        except RegistryError:
            raise

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str, str]:
        """``(bytes, media type, digest)`` of a manifest; a digest reference is checked."""
        resp = self.request(
            "GET",
            f"/v2/{repo}/manifests/{reference}",
            scope=self._scope(repo, False),
            headers={"Accept": ACCEPT_MANIFESTS},
        )
        digest = sha256_digest(resp.body)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(
                f"registry {self.host} returned a manifest for {repo}@{reference} whose digest "
                f"is {digest}"
            )
        media = (_header(resp.headers, "Content-Type") or "").split(";")[0].strip()
        if not media:
            media = str(json.loads(resp.body).get("mediaType", ""))
        return resp.body, media, digest

    def manifest_exists(self, repo: str, reference: str) -> bool:
        resp = self.request(
            "HEAD",
            f"/v2/{repo}/manifests/{reference}",
            scope=self._scope(repo, False),
            headers={"Accept": ACCEPT_MANIFESTS},
            ok=(200, 404),
        )
        return resp.status == 200

    def blob_exists(self, repo: str, digest: str) -> bool:
        resp = self.request(
            "HEAD", f"/v2/{repo}/blobs/{digest}", scope=self._scope(repo, False), ok=(200, 404)
        )
        return resp.status == 200

    def get_blob(self, repo: str, digest: str, sink: _Sink) -> None:
        """Stream a blob into ``sink``; its digest is checked (the caller discards on error)."""
        hasher = _Hashing(sink)
        self.request(
            "GET", f"/v2/{repo}/blobs/{digest}", scope=self._scope(repo, False), sink=hasher
        )
        if "sha256:" + hasher.sha.hexdigest() != digest:
            raise RegistryError(f"registry {self.host} sent blob {digest} with other content")

    def get_blob_bytes(self, repo: str, digest: str, limit: int = 64 << 20) -> bytes:
        resp = self.request("GET", f"/v2/{repo}/blobs/{digest}", scope=self._scope(repo, False))
        if len(resp.body) > limit:
            raise RegistryError(f"blob {digest} of {repo} is over {limit} bytes")
        if sha256_digest(resp.body) != digest:
            raise RegistryError(f"registry {self.host} sent blob {digest} with other content")
        return resp.body

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Ask the registry to link a blob it holds in ``from_repo``; False if it did not."""
        query = urllib.parse.urlencode({"mount": digest, "from": from_repo})
        resp = self.request(
            "POST",
            f"/v2/{repo}/blobs/uploads/?{query}",
            scope=self._scope(repo, True),
            ok=(201, 202),
            body=b"",
        )
        if resp.status == 201:
            return True
        self._cancel(repo, resp)
        return False

    def put_blob(self, repo: str, digest: str, data: bytes | Path) -> None:
        """Upload a blob (POST then one monolithic PUT), unless the registry has it."""
        scope = self._scope(repo, True)
        if self.blob_exists(repo, digest):
            return
        start = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope, ok=(202,), body=b"")
        location = _header(start.headers, "Location")
        if not location:
            raise RegistryError(f"registry {self.host} started an upload without a Location")
        url = urllib.parse.urljoin(self.base + "/", location)
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
        size = len(data) if isinstance(data, bytes) else data.stat().st_size
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        if isinstance(data, bytes):
            self.request("PUT", url, scope=scope, headers=headers, body=data, ok=(201,))
            return
        with data.open("rb") as fh:
            self.request("PUT", url, scope=scope, headers=headers, body=fh, ok=(201,))

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> Response:
        """PUT a manifest by tag or digest; the digest the registry reports must be ours."""
        resp = self.request(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            scope=self._scope(repo, True),
            headers={"Content-Type": media_type},
            body=data,
            ok=(201,),
        )
        reported = _header(resp.headers, "Docker-Content-Digest")
        if reported and reported != sha256_digest(data):
            raise RegistryError(
                f"registry {self.host} stored the manifest as {reported}, not {sha256_digest(data)}"
            )
        return resp

    def referrers(self, repo: str, digest: str) -> list[dict[str, Any]] | None:
        """The manifests whose ``subject`` is ``digest`` (the referrers API), or None when the
        registry has no such API (it answers 404 with no image index)."""
        resp = self.request(
            "GET",
            f"/v2/{repo}/referrers/{digest}",
            scope=self._scope(repo, False),
            headers={"Accept": INDEX},
            ok=(200, 404),
        )
        media = (_header(resp.headers, "Content-Type") or "").split(";")[0].strip()
        if resp.status != 200 or media != INDEX:
            return None
        try:
            manifests = json.loads(resp.body).get("manifests") or []
        except (ValueError, AttributeError):
            return None
        return [m for m in manifests if isinstance(m, dict)]

    def _cancel(self, repo: str, started: Response) -> None:
        location = _header(started.headers, "Location")
        if location:
            url = urllib.parse.urljoin(self.base + "/", location)
            self.request("DELETE", url, scope=self._scope(repo, True), ok=(200, 202, 204, 404, 405))


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


class _Hashing:
    def __init__(self, inner: _Sink) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return self.inner.write(data)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None

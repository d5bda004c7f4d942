"""The node's data directory: identity key, config, API token, lock and runtime files.

Layout of ``D``::

    identity.key   Ed25519 key, PKCS#8 PEM, mode 0600 (refused if group/other can access it)
    peer_id        the PeerId text the key had when the directory was created
    config.toml    operator settings, written on init with every default commented out
    api.token      admin API bearer token (32 random bytes, urlsafe base64), mode 0600
    lock           flock()ed by the running daemon; holds its PID for error messages
    api            the running daemon's actual API multiaddr; removed on shutdown
    node.db        SQLite database (``node.storage``)

Why a ``peer_id`` file rather than a row in the database: it is checked synchronously before
anything else opens, needs no schema, and an operator can ``cat`` it. If someone swaps
``identity.key`` under an existing directory, the node refuses to start instead of silently
becoming another peer with the old peer's database. A missing ``peer_id`` file (a key copied in by
hand) is recreated from the key on open.

All files are written atomically (temp file, fsync, rename, fsync of the directory), so a crash
leaves either the old or the new file, never a torn one.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import os
import secrets
import stat
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from node.core.errors import ConfigError, IdentityError
from node.core.identity import Identity, PeerId

if TYPE_CHECKING:
    from node.core.multiaddr import Multiaddr

__all__ = ["DataDir", "atomic_write", "default_data_dir"]

ENV_DATA_DIR = "SPACEPANDA_DATA_DIR"
_PRIVATE_MODE = 0o600
_DIR_MODE = 0o700
_TOKEN_BYTES = 32
_MAX_SMALL_FILE = 64 * 1024  # identity/token/api files are tiny; refuse anything huge


def default_data_dir(env: dict[str, str] | None = None) -> Path:
    """``$SPACEPANDA_DATA_DIR`` or ``~/.local/share/spacepanda``."""
    environ = os.environ if env is None else env
    value = environ.get(ENV_DATA_DIR)
    if value:
        return Path(value).expanduser()
    return Path.home() / ".local" / "share" / "spacepanda"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not widen or narrow what we asked for
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _read_small(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_SMALL_FILE + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_SMALL_FILE:
        raise ConfigError(f"{what} {path} is too large to be valid")
    return data


def _check_private(path: Path, what: str) -> None:
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot stat {what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{what} {path} is not a regular file")
    loose = stat.S_IMODE(st.st_mode) & 0o077
    if loose:
        raise ConfigError(
            f"{what} {path} is accessible by group/other (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {path}"
        )


class DataDir:
    """One node's directory. ``create()`` on first start, ``open()`` afterwards.

    ``lock()`` takes an exclusive ``flock`` on ``D/lock`` for the daemon's lifetime, so two
    daemons can never share a directory (the OS drops the lock if the process dies).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).expanduser()
        self._lock_fd: int | None = None

    def __repr__(self) -> str:
        return f"DataDir({str(self.path)!r})"

    # -- paths -------------------------------------------------------------------------
    @property
    def identity_path(self) -> Path:
        return self.path / "identity.key"

    @property
    def peer_id_path(self) -> Path:
        return self.path / "peer_id"

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    @property
    def token_path(self) -> Path:
        return self.path / "api.token"

    @property
    def lock_path(self) -> Path:
        return self.path / "lock"

    @property
    def api_path(self) -> Path:
        return self.path / "api"

    @property
    def db_path(self) -> Path:
        return self.path / "node.db"

    def is_initialised(self) -> bool:
        return self.identity_path.exists()

    # -- lifecycle ---------------------------------------------------------------------
    def create(self, config_text: str | None = None) -> Identity:
        """Initialise a new directory: identity key, ``peer_id``, ``config.toml``, ``api.token``.

        Refuses (ConfigError) if the directory already holds an identity. ``config_text``
        defaults to ``node.config.default_config_toml()``; an existing config.toml is kept.
        """
        try:
            self.path.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or exc
            raise ConfigError(f"cannot create data dir {self.path}: {reason}") from None
        if not self.path.is_dir():
            raise ConfigError(f"data dir {self.path} exists and is not a directory")
        held = self._lock_fd is not None
        if not held:
            self.lock()
        try:
            if self.identity_path.exists():
                raise ConfigError(
                    f"data dir {self.path} is already initialised (identity.key exists)"
                )
            identity = Identity.generate()
            self._write(self.identity_path, identity.to_pem(), _PRIVATE_MODE)
            self._write(self.peer_id_path, (str(identity.peer_id) + "\n").encode(), 0o644)
            if not self.config_path.exists():
                if config_text is None:
                    from node.config import default_config_toml

                    config_text = default_config_toml()
                self._write(self.config_path, config_text.encode(), 0o644)
            self._write_new_token()
            return identity
        finally:
            if not held:
                self.unlock()

    def open(self) -> Identity:
        """Load and check the identity of an initialised directory (creating a lost token)."""
        if not self.path.is_dir():
            raise ConfigError(
                f"data dir {self.path} does not exist; run `spacepanda init --data-dir {self.path}`"
                " or `spacepanda run --init`"
            )
        if not self.identity_path.exists():
            raise ConfigError(
                f"data dir {self.path} is not initialised (no identity.key); "
                f"run `spacepanda init --data-dir {self.path}`"
            )
        identity = self.load_identity()
        self._check_peer_id(identity.peer_id)
        if not self.token_path.exists():
            self._write_new_token()
        else:
            self.read_token()  # validates permissions and content
        return identity

    def load_identity(self) -> Identity:
        _check_private(self.identity_path, "identity key")
        try:
            pem = _read_small(self.identity_path, "identity key")
        except FileNotFoundError:
            raise ConfigError(f"identity key {self.identity_path} is missing") from None
        try:
            return Identity.from_pem(pem)
        except IdentityError as exc:
            raise IdentityError(f"{self.identity_path}: {exc}") from None

    def read_peer_id(self) -> PeerId:
        """This directory's PeerId without taking the lock: the ``peer_id`` file, else the
        key's (for ``spacepanda id`` while the node runs, or with no node at all)."""
        if not self.identity_path.exists():
            raise ConfigError(
                f"data dir {self.path} is not initialised (no identity.key); "
                f"run `spacepanda init --data-dir {self.path}`"
            )
        try:
            text = _read_small(self.peer_id_path, "peer_id file").decode("ascii", "replace")
        except FileNotFoundError:
            return self.load_identity().peer_id
        try:
            return PeerId.from_string(text.strip())
        except IdentityError as exc:
            raise IdentityError(f"{self.peer_id_path} is corrupt: {exc}") from None

    def _check_peer_id(self, actual: PeerId) -> None:
        try:
            text = _read_small(self.peer_id_path, "peer_id file").decode("ascii", "replace")
        except FileNotFoundError:
            self._write(self.peer_id_path, (str(actual) + "\n").encode(), 0o644)
            return
        try:
            recorded = PeerId.from_string(text.strip())
        except IdentityError as exc:
            raise IdentityError(f"{self.peer_id_path} is corrupt: {exc}") from None
        if recorded != actual:
            raise IdentityError(
                f"identity.key in {self.path} belongs to {actual}, but this data dir was created "
                f"for {recorded} ({self.peer_id_path}); refusing to start with a swapped key"
            )

    # -- api token ---------------------------------------------------------------------
    def _write_new_token(self) -> str:
        token = base64.urlsafe_b64encode(secrets.token_bytes(_TOKEN_BYTES)).rstrip(b"=").decode()
        self._write(self.token_path, (token + "\n").encode(), _PRIVATE_MODE)
        return token

    def read_token(self) -> str:
        _check_private(self.token_path, "API token")
        try:
            raw = _read_small(self.token_path, "API token")
        except FileNotFoundError:
            raise ConfigError(f"API token {self.token_path} is missing") from None
        token = raw.decode("ascii", "replace").strip()
        if len(token) < 16 or not token.isascii() or any(c.isspace() for c in token):
            raise ConfigError(f"API token {self.token_path} is malformed")
        return token

    # -- lock --------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the exclusive data dir lock, or raise ConfigError naming the holder's PID."""
        if self._lock_fd is not None:
            return
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot open lock file {self.lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = self._read_lock_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = f"PID {holder}" if holder else "another process"
                raise ConfigError(
                    f"data dir {self.path} is in use by another spacepanda daemon ({who})"
                ) from None
            raise ConfigError(f"cannot lock {self.lock_path}: {exc.strerror}") from None
        # Record our PID so a second daemon can say who holds the directory.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    @staticmethod
    def _read_lock_pid(fd: int) -> int | None:
        try:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def unlock(self) -> None:
        # The file stays: unlinking a lock file races with a process about to flock it.
        if self._lock_fd is None:
            return
        fd, self._lock_fd = self._lock_fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @property
    def locked(self) -> bool:
        return self._lock_fd is not None

    def __enter__(self) -> DataDir:
        self.lock()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove_api_address()
        self.unlock()

    # -- runtime API address -------------------------------------------------------------
    def write_api_address(self, addr: Multiaddr | str) -> None:
        """Publish the running API's actual address in ``D/api`` (for the CLI)."""
        self._write(self.api_path, (str(addr) + "\n").encode(), 0o644)

    def remove_api_address(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.api_path.unlink()

    def read_api_address(self) -> str:
        """The text in ``D/api``; ConfigError "node not running" when there is none."""
        try:
            raw = _read_small(self.api_path, "API address file")
        except FileNotFoundError:
            raise ConfigError(f"node not running (no {self.api_path} file)") from None
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            raise ConfigError(f"API address file {self.api_path} is empty")
        return text

    # -- helpers -----------------------------------------------------------------------
    def _write(self, path: Path, data: bytes, mode: int) -> None:
        try:
            atomic_write(path, data, mode)
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None

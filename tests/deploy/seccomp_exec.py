"""Run a command under a systemd unit's SystemCallFilter= and MemoryDenyWriteExecute=.

Usage: python3 seccomp_exec.py [--mdwe] --filter SPEC [--filter SPEC ...] -- COMMAND...

Each SPEC is one SystemCallFilter= value ("@system-service", "~@privileged @resources"), applied
in order as systemd does: the first allow-list sets the base, "~" entries remove from it.
Syscalls outside the result fail with EPERM (SystemCallErrorNumber=EPERM). ``--mdwe`` sets
PR_SET_MDWE, the kernel's equivalent of MemoryDenyWriteExecute= (Linux 6.3+). Needs libseccomp's
Python binding (Debian: python3-seccomp), so it runs under the system python3, then execs.
Exit 3 when the kernel or libseccomp cannot provide what was asked.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import sys

import seccomp  # type: ignore[import-not-found]

PR_SET_NO_NEW_PRIVS = 38
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1


def expand(name: str, seen: set[str]) -> set[str]:
    if not name.startswith("@"):
        return {name}
    if name in seen:
        return set()
    seen.add(name)
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True,
                         text=True, check=True).stdout
    calls: set[str] = set()
    for line in out.splitlines()[1:]:
        item = line.strip()
        if item and not item.startswith("#"):
            calls |= expand(item, seen)
    return calls


def main(argv: list[str]) -> int:
    split = argv.index("--")
    opts, command = argv[:split], argv[split + 1:]
    specs = [opts[i + 1] for i, o in enumerate(opts) if o == "--filter"]
    allowed: set[str] | None = None
    for spec in specs:
        deny = spec.startswith("~")
        names = set().union(*(expand(n, set()) for n in spec.lstrip("~").split()))
        if deny:
            allowed = (allowed or set()) - names
        else:
            allowed = names if allowed is None else allowed | names
    if not allowed:
        print("no allowed syscalls", file=sys.stderr)
        return 3
    flt = seccomp.SyscallFilter(defaction=seccomp.ERRNO(1))  # EPERM
    for name in sorted(allowed):
        with contextlib.suppress(RuntimeError, ValueError):  # not a syscall on this arch
            flt.add_rule(seccomp.ALLOW, name)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return 3
    if "--mdwe" in opts and libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        print(f"PR_SET_MDWE failed: errno {ctypes.get_errno()}", file=sys.stderr)
        return 3
    flt.load()
    os.execvp(command[0], command)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Runs a command as a child subreaper, so that nothing it starts is ever left to init.

    scripts/subreaper.py COMMAND [ARG ...]

Chromium starts its crash handlers by a double fork into sessions of their own: without a
subreaper they are re-parented to PID 1 and reaped there when the browser ends, outside the
test that started them. Under this script they are re-parented here instead and reaped here.

SIGTERM or SIGINT is passed on to COMMAND. When COMMAND has ended, whatever it left behind
(now this script's children) is asked to end (SIGTERM), then killed after 3 s, and reaped;
the script exits with COMMAND's status once it has no child left, at most 10 s later.
"""
import ctypes
import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def children():
    """The processes whose parent is this one."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # The second field (the command) may hold spaces and parentheses: split after it.
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            found.append(int(entry))
    return found


def reap_all():
    """Reaps every child that has ended; True when no child is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return False


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: subreaper.py COMMAND [ARG ...]")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"subreaper.py: prctl failed: {os.strerror(ctypes.get_errno())}")

    command = os.fork()
    if command == 0:
        try:
            os.execvp(sys.argv[1], sys.argv[1:])
        finally:
            os._exit(127)

    def forward(signum, _frame):
        try:
            os.kill(command, signal.SIGTERM)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    status = 0
    while True:
        try:
            pid, wait_status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == command:
            status = os.waitstatus_to_exitcode(wait_status)
            break

    started = time.monotonic()
    while not reap_all():
        elapsed = time.monotonic() - started
        if elapsed > 10:
            break
        for pid in children():
            try:
                os.kill(pid, signal.SIGKILL if elapsed > 3 else signal.SIGTERM)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    sys.exit(status if status >= 0 else 128 - status)


if __name__ == "__main__":
    main()

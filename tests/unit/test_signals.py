"""The daemon's signals (SIGTERM, SIGINT, a worker's SIGUSR1) whenever they land.

Python runs a signal's handler in the main thread between any two of its steps, also while
that thread holds the lock of the Event its idle loop waits on. An idle worker hung so, for
good, when its daemon was killed (CI of 2026-12-07): the handler set that Event. Here the
signals land exactly there, in a fresh interpreter, on the real `Daemon`."""

import subprocess
import sys
import textwrap

import pace
from servicekit import ROOT, ServiceDir

PROGRAM = textwrap.dedent("""
    import os, signal, sys
    from service.config import load_config
    from service.daemon import Daemon

    daemon = Daemon(load_config(sys.argv[1]), slot=0, device="cpu")
    daemon._install_signals()
    with daemon.wake._cond:  # where the worker's idle `wake.wait` is just after its timeout
        os.kill(os.getpid(), signal.{signal})
        sum(range(1000))  # the interpreter runs the handler within these steps
    daemon.{awaited}.wait(float(sys.argv[2]))
    print("stopping" if daemon.stopping.is_set() else "running", "woken" if daemon.wake.is_set() else "asleep")
""")


def run(site: ServiceDir, signal_name: str, awaited: str) -> str:
    """The program's answer once `awaited` is set (or after a ceiling it should never need); a
    hang (a handler waiting for its own thread) fails."""
    limit = pace.ceiling(30)
    try:
        done = subprocess.run([sys.executable, "-c", PROGRAM.format(signal=signal_name, awaited=awaited), str(site.config_path),
                               str(limit)], capture_output=True, text=True, cwd=ROOT, timeout=2 * limit)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the daemon hung in its {signal_name} handler") from None
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_sigterm_while_the_idle_loop_holds_its_lock_stops_the_daemon(tmp_path):
    assert run(ServiceDir(tmp_path), "SIGTERM", "stopping") == "stopping woken"


def test_sigusr1_while_the_idle_loop_holds_its_lock_wakes_the_worker(tmp_path):
    assert run(ServiceDir(tmp_path), "SIGUSR1", "wake") == "running woken"

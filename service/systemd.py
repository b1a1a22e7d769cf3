"""The systemd unit for `nst serve`, written for one config file."""

from __future__ import annotations

import grp
import pwd
import shlex
import sys
from pathlib import Path

from .config import Config

UNIT_NAME = "nst.service"


def unit_text(config: Config, *, user: bool, executable: str | None = None, run_as: str | None = None) -> str:
    """The unit's text. `run_as` (system units): the account the daemon runs as; root if None."""
    exe = executable or str(Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else "nst")
    config_path = str(config.path.resolve()) if config.path else ""
    exec_start = f"{shlex.quote(exe)} --config {shlex.quote(config_path)} serve" if config_path else \
        f"{shlex.quote(exe)} serve"
    writable = " ".join(shlex.quote(str(p.resolve())) for p in (config.inbox, config.outbox, config.state)
                        + ((config.shared,) if config.shared else ()))
    lines = [
        "[Unit]",
        "Description=nst neural style transfer watch-folder service",
        "Documentation=file://" + (str(config.path.resolve().parent / "README.md") if config.path else ""),
        "After=network-online.target local-fs.target remote-fs.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={exec_start}",
        f"WorkingDirectory={shlex.quote(str(config.path.resolve().parent)) if config.path else '%h'}",
        "Restart=on-failure",
        "RestartSec=5",
        # SIGTERM reaches the daemon only; it checkpoints at the next iteration and exits.
        "KillMode=mixed",
        "TimeoutStopSec=60",
        # Pinged only while the worker makes progress: a hung job restarts the service.
        f"WatchdogSec={max(30, int(config.worker.stall_seconds))}",
        "UMask=0027",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "ProtectSystem=strict",
        f"ReadWritePaths={writable}",
        "PrivateTmp=yes" if not under_tmp(config) else
        "# PrivateTmp off: a folder of the service is under /tmp or /var/tmp, which it would hide",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictSUIDSGID=yes",
        "ProtectKernelLogs=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "ProtectProc=invisible",
        "RestrictNamespaces=yes",
        "LockPersonality=yes",
        "RestrictRealtime=yes",
        # AF_UNIX for systemd's notify socket, AF_INET(6) for PostgreSQL and the web page.
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallErrorNumber=EPERM",
        # Not PrivateDevices or MemoryDenyWriteExecute: the GPU's device nodes and oneDNN's
        # just-in-time kernels need them off.
        "",
        "[Install]",
        f"WantedBy={'default.target' if user else 'multi-user.target'}",
        "",
    ]
    if not user:
        lines.insert(lines.index("ProtectSystem=strict"), "ProtectHome=read-only")
    if run_as:
        group = grp.getgrgid(pwd.getpwnam(run_as).pw_gid).gr_name
        at = lines.index("Type=notify")
        lines[at:at] = [f"User={run_as}", f"Group={group}"]
    return "\n".join(lines)


def folders(config: Config) -> list[Path]:
    return [config.inbox, config.outbox, config.state] + ([config.shared] if config.shared else [])


def under_tmp(config: Config) -> bool:
    tmp = (Path("/tmp"), Path("/var/tmp"))
    return any(t == p or t in p.parents for p in (f.resolve() for f in folders(config)) for t in tmp)


def unwritable_for(config: Config, account: str) -> list[Path]:
    """The service's folders (or, where one does not exist yet, the folder it would be made in)
    that `account` could not write: a unit running as it would fail at its first job."""
    import os
    import stat

    entry = pwd.getpwnam(account)
    if entry.pw_uid == 0:
        return []
    groups = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if account in g.gr_mem}
    blocked = []
    for folder in folders(config):
        probe = folder.resolve()
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        st = os.stat(probe)
        if st.st_uid == entry.pw_uid:
            ok = st.st_mode & stat.S_IWUSR
        elif st.st_gid in groups:
            ok = st.st_mode & stat.S_IWGRP
        else:
            ok = st.st_mode & stat.S_IWOTH
        if not ok:
            blocked.append(folder)
    return blocked


def default_account(config: Config) -> str | None:
    """The owner of the service folder: the files it writes should be theirs. None for root."""
    owner = (config.path.parent if config.path else Path.cwd()).stat().st_uid
    return None if owner == 0 else pwd.getpwuid(owner).pw_name


def unit_path(*, user: bool) -> Path:
    if user:
        return Path.home() / ".config" / "systemd" / "user" / UNIT_NAME
    return Path("/etc/systemd/system") / UNIT_NAME

"""sd_notify never blocks the daemon, whoever reads the notify socket (issue 27)."""

import socket
import threading

from service.daemon import sd_notify


def test_sd_notify_drops_what_a_full_socket_cannot_take_instead_of_waiting(tmp_path, monkeypatch):
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:  # bound, never read
        manager.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        results: list[bool] = []
        sender = threading.Thread(target=lambda: results.extend(sd_notify("WATCHDOG=1") for _ in range(500)),
                                  daemon=True)
        sender.start()
        sender.join(120)  # a ceiling for a stuck sender only: 500 sends take milliseconds
        assert not sender.is_alive(), "sd_notify blocked on a notify socket nobody reads"
        assert results[0] is True and results[-1] is False  # the queue filled, later messages dropped

"""Free loopback ports for the servers the suite starts, that nothing else takes meanwhile.

A port is found free by binding it and closing the socket; the server binds it a little
later. In between, three things could take it:

* an outgoing connection, which gets its local port from the kernel's ephemeral range
  (``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999 by default). The suite makes
  thousands (HTTP clients, Kafka clients, the brokers among themselves), so a port from
  ``bind(("127.0.0.1", 0))``, which is from that range too, is now and then gone by the
  time the server binds it ("Address already in use"). So ports are picked at random
  *below* the ephemeral range, where only an explicit ``bind`` can take them;
* another pytest-xdist worker picking the same one: each worker takes only the ports of its
  own residue class (``port % PYTEST_XDIST_WORKER_COUNT == worker index``);
* another caller in this process, before the first server bound it: a process does not
  hand out a port twice (of the last few hundred).

Where the ephemeral range leaves no room below it, the kernel picks (``bind`` to port 0).
"""

from __future__ import annotations

import os
import random
import socket
import threading
from collections import deque
from pathlib import Path

# Below the ephemeral range, above the ports services usually take by default.
LOWEST = 20_000
_DEFAULT_EPHEMERAL = (32_768, 60_999)

_recent: deque[int] = deque(maxlen=512)
_lock = threading.Lock()
_random = random.Random()  # seeded from os.urandom: workers and runs pick differently


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL


def _worker_slot() -> tuple[int, int]:
    """(this worker's index, the number of workers); (0, 1) outside pytest-xdist."""
    try:
        count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    except ValueError:
        count = 1
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    return index % count, count


def _candidates() -> range | None:
    """The ports to pick from, or None: let the kernel pick."""
    low = _ephemeral_range()[0]
    return range(LOWEST, low) if low - LOWEST >= 1_000 else None


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports, free now, that no other worker and no recent
    caller in this process was given. The sockets are held bound until all are found."""
    slot, slots = _worker_slot()
    pool = _candidates()
    sockets: list[socket.socket] = []
    found: list[int] = []
    with _lock:
        try:
            attempts = 0
            while len(found) < count:
                attempts += 1
                if attempts > 100_000:
                    raise RuntimeError(f"no {count} free loopback ports found")
                wanted = _random.choice(pool) if pool is not None else 0
                if wanted and (wanted % slots != slot or wanted in _recent or wanted in found):
                    continue
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    sock.bind(("127.0.0.1", wanted))
                except OSError:  # taken
                    sock.close()
                    continue
                sockets.append(sock)
                port = int(sock.getsockname()[1])
                if port % slots == slot and port not in _recent and port not in found:
                    found.append(port)
        finally:
            for sock in sockets:
                sock.close()
        _recent.extend(found)
    return found


def free_port() -> int:
    """One port, as ``free_ports``."""
    return free_ports(1)[0]

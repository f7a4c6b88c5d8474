"""Packet delay without `tc netem`: an NFQUEUE listener that releases packets late.

Some kernels (this machine's, for one) are built without `sch_netem`. The same effect
comes from the netfilter queue, which every kernel with `NETFILTER_NETLINK_QUEUE` has:
an iptables rule (`-j NFQUEUE --queue-num Q`) hands each matching packet to this
process, the kernel holds the packet, and this process gives the ACCEPT verdict
`delay ± jitter` milliseconds later. The packets really wait inside the kernel's
network stack of the namespace, exactly like a slow link; order is kept (release
times never go backwards).

Run inside the namespace whose traffic is delayed:

    ip netns exec lanpos-x-2 python -m tests.chaos.netdelay --queue 7 --delay-ms 150 --jitter-ms 50

Pure Python (raw netlink socket), no library needed. Stops on SIGTERM; the rule uses
`--queue-bypass`, so packets flow undelayed as soon as this process is gone.
"""

from __future__ import annotations

import argparse
import heapq
import random
import signal
import socket
import struct
import sys
import threading
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQA_CFG_F_FAIL_OPEN = 1
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NF_ACCEPT = 1
AF_INET = 2


def _attr(kind: int, data: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + b"\0" * ((4 - len(raw) % 4) % 4)


def _message(msg: int, queue: int, attrs: bytes, flags: int = NLM_F_REQUEST, seq: int = 0) -> bytes:
    body = struct.pack("=BBH", AF_INET, 0, socket.htons(queue)) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags, seq, 0) + body


class Delayer:
    def __init__(self, queue: int, delay_ms: float, jitter_ms: float, seed: int):
        self.queue = queue
        self.delay = delay_ms / 1000.0
        self.jitter = jitter_ms / 1000.0
        self.rng = random.Random(seed)
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE (root)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((0, 0))
        self.heap: list[tuple[float, int]] = []
        self.cond = threading.Condition()
        self.last_release = 0.0
        self.stop = threading.Event()

    def configure(self) -> None:
        seq = 1
        for attrs in (
            _attr(NFQA_CFG_CMD, struct.pack("=BxH", NFQNL_CFG_CMD_BIND, socket.htons(AF_INET))),
            _attr(NFQA_CFG_PARAMS, struct.pack("!IB", 128, NFQNL_COPY_META))
            + _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", 8192))
            + _attr(NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN))
            + _attr(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN)),
        ):
            self.sock.send(_message(NFQNL_MSG_CONFIG, self.queue, attrs, NLM_F_REQUEST | NLM_F_ACK, seq))
            reply = self.sock.recv(65536)
            length, kind = struct.unpack_from("=IH", reply)
            if kind == NLMSG_ERROR:
                (err,) = struct.unpack_from("=i", reply, 16)
                if err != 0:
                    raise OSError(-err, f"nfqueue config failed: errno {-err}")
            seq += 1

    def verdict(self, packet_id: int) -> None:
        attrs = _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id))
        try:
            self.sock.send(_message(NFQNL_MSG_VERDICT, self.queue, attrs))
        except OSError:
            pass

    def releaser(self) -> None:
        while not self.stop.is_set():
            with self.cond:
                while not self.heap and not self.stop.is_set():
                    self.cond.wait(0.2)
                if self.stop.is_set():
                    break
                due, packet_id = self.heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self.cond.wait(wait)
                    continue
                heapq.heappop(self.heap)
            self.verdict(packet_id)
        with self.cond:  # let everything still held through
            held = [p for _, p in self.heap]
            self.heap.clear()
        for packet_id in held:
            self.verdict(packet_id)

    def run(self) -> None:
        threading.Thread(target=self.releaser, daemon=True).start()
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                if self.stop.is_set():
                    break
                continue  # ENOBUFS: the kernel dropped queue messages; carry on
            offset = 0
            while offset + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if length < 16:
                    break
                if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    self._on_packet(data[offset + 20: offset + length])
                offset += (length + 3) & ~3

    def _on_packet(self, attrs: bytes) -> None:
        pos = 0
        while pos + 4 <= len(attrs):
            alen, akind = struct.unpack_from("=HH", attrs, pos)
            if alen < 4:
                return
            if (akind & 0x7FFF) == NFQA_PACKET_HDR:
                (packet_id,) = struct.unpack_from("!I", attrs, pos + 4)
                delay = max(0.0, self.delay + self.rng.uniform(-self.jitter, self.jitter))
                with self.cond:
                    due = max(time.monotonic() + delay, self.last_release)
                    self.last_release = due
                    heapq.heappush(self.heap, (due, packet_id))
                    self.cond.notify()
                return
            pos += (alen + 3) & ~3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=3600.0,
                        help="stop by itself after this long (bounded, like every chaos loop)")
    args = parser.parse_args(argv)
    delayer = Delayer(args.queue, args.delay_ms, args.jitter_ms, args.seed)

    def stop(*_a: object) -> None:
        delayer.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    timer = threading.Timer(args.max_seconds, stop)
    timer.daemon = True
    timer.start()
    delayer.configure()
    print("ready", flush=True)
    try:
        delayer.run()
    finally:
        delayer.stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run a server in a private network namespace, reachable only through 127.0.0.1 relays on this host.

Weaviate's gRPC (and its gossip/raft) listeners bind every interface whatever bind address it is given.
Started inside ``unshare -rn`` (a new user + network namespace that has only a loopback device) nothing
outside the machine, or even outside that namespace, can reach them. For each forwarded port this script
listens on 127.0.0.1:PORT in the host namespace and carries each connection over a Unix socket (a file,
so it crosses namespaces) to a relay inside the namespace that connects to 127.0.0.1:PORT there.

    python infra/weaviate/netns.py --sock-dir DIR --port 8080 --port 50051 -- weaviate-server --port 8080 ...

Stops (and stops the server) on SIGTERM/SIGINT or when the server exits. Needs unprivileged user
namespaces (or root with ``unshare -n``).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import shutil
import signal
import socket
import struct
import sys
from pathlib import Path

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def loopback_up() -> None:
    """Bring ``lo`` up in this (new) network namespace, without needing the ``ip`` tool."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH", b"lo", 0)))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def relay(connect: object) -> object:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await connect()  # type: ignore[operator]
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
    return handle


async def serve(args: argparse.Namespace, inner: bool) -> int:
    sock_dir = Path(args.sock_dir)
    servers = []
    for port in args.port:
        path = str(sock_dir / f"{port}.sock")
        if inner:  # unix socket -> 127.0.0.1:port inside the namespace
            servers.append(await asyncio.start_unix_server(
                relay(lambda p=port: asyncio.open_connection("127.0.0.1", p)), path=path))
            os.chmod(path, 0o600)
        else:  # 127.0.0.1:port on the host -> unix socket
            servers.append(await asyncio.start_server(
                relay(lambda p=path: asyncio.open_unix_connection(p)), host="127.0.0.1", port=port))
    if inner:
        loopback_up()
        child = await asyncio.create_subprocess_exec(*args.command)
    else:
        unshare = shutil.which("unshare") or "unshare"
        flags = "-n" if os.geteuid() == 0 and args.root_netns_only else "-rn"
        child = await asyncio.create_subprocess_exec(unshare, flags, sys.executable, __file__, "--inner",
                                                     "--sock-dir", str(sock_dir),
                                                     *[f"--port={p}" for p in args.port], "--", *args.command)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, child.terminate)
    code = await child.wait()
    for server in servers:
        server.close()
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sock-dir", required=True, help="private folder for the unix sockets")
    parser.add_argument("--port", type=int, action="append", required=True, help="port to forward (repeat)")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root-netns-only", action="store_true", help="as root: unshare -n instead of -rn")
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    if not args.inner:
        Path(args.sock_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    return asyncio.run(serve(args, args.inner))


if __name__ == "__main__":
    sys.exit(main())

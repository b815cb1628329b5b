#!/usr/bin/env python3
"""bench/shaper.py: a TCP proxy with a bandwidth limit, standing in for the link to a
remote region. Every connection through one shaper shares its rate (one token bucket per
direction), as the connections of one client to a far registry share that path.

    shaper.py --to 127.0.0.1:5000 --rate-mib 40 [--port-file F]

Listens on 127.0.0.1 on a port the kernel picks and prints it (and writes it to
--port-file); runs until killed.
"""
import argparse
import asyncio
import sys
import time


class Bucket:
    """Bytes per second, with at most a tenth of a second's worth of burst."""

    def __init__(self, rate):
        self.rate = rate
        self.next = time.monotonic()

    async def take(self, n):
        now = time.monotonic()
        self.next = max(self.next, now - 0.1) + n / self.rate
        if self.next > now:
            await asyncio.sleep(self.next - now)


async def pipe(reader, writer, bucket):
    try:
        while True:
            data = await reader.read(64 * 1024)
            if not data:
                break
            await bucket.take(len(data))
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - the peer is gone either way
            pass


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--to", required=True, help="host:port behind the link")
    ap.add_argument("--rate-mib", type=float, required=True, help="MiB/s each way")
    ap.add_argument("--port-file")
    args = ap.parse_args()
    host, port = args.to.rsplit(":", 1)
    up, down = Bucket(args.rate_mib * 1048576), Bucket(args.rate_mib * 1048576)

    async def handle(client_r, client_w):
        try:
            server_r, server_w = await asyncio.open_connection(host, int(port))
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, server_w, up), pipe(server_r, client_w, down))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    bound = server.sockets[0].getsockname()[1]
    print(bound, flush=True)
    if args.port_file:
        with open(args.port_file, "w") as f:
            f.write(f"{bound}\n")
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)

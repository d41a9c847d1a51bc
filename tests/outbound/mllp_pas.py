"""A PAS's MLLP listener for the bridge's tests, written apart from the bridge's own MLLP
code (asyncio, its own framing): it receives the bridge's REF/ADT messages and answers
each with an ACK, misbehaving on request.

    python3 mllp_pas.py [--faults F,F,...]

Prints `port N` first, then one JSON line per message received:
{"control_id": ..., "type": ..., "conn": n}. Faults:

- no-ack-first: the first copy of each MSH-10 gets no ACK (the bridge must time out,
  reconnect and send the same bytes again).
- reset-first: the first message of the run gets half an ACK, then the connection is reset.
- late-ack: before each ACK, an ACK for the previous message (a late one) in the same write.
- split: every ACK written one byte at a time.
- ae-every:N: every N-th new MSH-10 is refused, answered AE and AR in turn.
- slow-reader: reads 64 bytes at a time, 1 ms apart (the bridge's writes back up).
- ae-first: the first copy of each MSH-10 is answered AE, a copy sent again AA.
- slow: 50 ms before each ACK.
"""

import asyncio
import json
import sys

SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"


def ack(control_id, code, counter, text=""):
    msg = (
        "MSH|^~\\&|PAS|RXX|ERS_BRIDGE|RXX|20240116091500||ACK^I12^ACK|"
        f"PASACK{counter:06d}|P|2.4\rMSA|{code}|{control_id}|{text}\r"
    )
    return SB + msg.encode() + EB + CR


class Pas:
    def __init__(self, faults):
        self.faults = faults
        self.seen = set()
        self.new_count = 0
        self.counter = 0
        self.conns = 0
        self.last_acked = None
        self.first_done = False

    def fault(self, name):
        return any(f == name or f.startswith(name + ":") for f in self.faults)

    def every(self):
        for f in self.faults:
            if f.startswith("ae-every:"):
                return int(f.split(":", 1)[1])
        return 0

    async def serve(self, reader, writer):
        self.conns += 1
        conn = self.conns
        buf = b""
        try:
            while True:
                if self.fault("slow-reader"):
                    chunk = await reader.read(64)
                    await asyncio.sleep(0.001)
                else:
                    chunk = await reader.read(4096)
                if not chunk:
                    break
                buf += chunk
                while True:
                    start = buf.find(SB)
                    end = buf.find(EB + CR, start + 1)
                    if start < 0 or end < 0:
                        break
                    message = buf[start + 1 : end]
                    buf = buf[end + 2 :]
                    if not await self.answer(message, writer, conn):
                        return
        except ConnectionError:
            pass  # the bridge dropped the connection (an ACK timeout): it connects again
        finally:
            writer.close()

    async def answer(self, message, writer, conn):
        fields = message.split(b"\r", 1)[0].decode("latin-1").split("|")
        control_id, kind = fields[9], fields[8]
        print(json.dumps({"control_id": control_id, "type": kind, "conn": conn}), flush=True)
        first_copy = control_id not in self.seen
        self.seen.add(control_id)
        if first_copy:
            self.new_count += 1
        if self.fault("reset-first") and not self.first_done:
            self.first_done = True
            writer.write(ack(control_id, "AA", 0)[:20])
            await writer.drain()
            writer.transport.abort()
            return False
        self.first_done = True
        if self.fault("no-ack-first") and first_copy:
            return True
        if self.fault("slow"):
            await asyncio.sleep(0.05)
        n = self.every()
        code = "AA"
        if n and first_copy and self.new_count % n == 0:
            code = "AE" if (self.new_count // n) % 2 else "AR"
        if self.fault("ae-first") and first_copy:
            code = "AE"
        self.counter += 1
        out = b""
        if self.fault("late-ack") and self.last_acked and self.last_acked != control_id:
            out += ack(self.last_acked, "AA", self.counter)
            self.counter += 1
        out += ack(control_id, code, self.counter, "refused by the test pas" if code != "AA" else "")
        if self.fault("split"):
            for i in range(len(out)):
                writer.write(out[i : i + 1])
                await writer.drain()
        else:
            writer.write(out)
            await writer.drain()
        self.last_acked = control_id
        return True


async def main():
    faults = []
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--faults":
        faults = [f for f in args[1].split(",") if f]
    pas = Pas(faults)
    server = await asyncio.start_server(pas.serve, "127.0.0.1", 0)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())

"""A paced byte source and its reader, for transfers that must last a while (a NAT that
forgets its mappings mid-transfer).

    paced_stream.py serve PORT CHUNKS INTERVAL   each connection gets CHUNKS blocks of 64 KiB,
                                                 one every INTERVAL seconds, then EOF
    paced_stream.py fetch PORT                   reads to EOF; prints JSON: bytes, whether
                                                 every block was intact, the longest gap
                                                 between two reads (seconds)
Block i is 64 KiB of the byte i % 251, so a reader can check every byte without the sender's
help."""
import json
import socket
import sys
import threading
import time

BLOCK = 65536


def serve(port, chunks, interval):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)

    def send(connection):
        with connection:
            try:
                start = time.monotonic()
                for index in range(chunks):
                    connection.sendall(bytes([index % 251]) * BLOCK)
                    delay = start + (index + 1) * interval - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                connection.shutdown(socket.SHUT_WR)
                connection.recv(1)
            except OSError:
                pass

    while True:
        connection, _ = listener.accept()
        threading.Thread(target=send, args=(connection,), daemon=True).start()


def fetch(port):
    received, intact, longest = 0, True, 0.0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        last = time.monotonic()
        while True:
            data = connection.recv(BLOCK)
            now = time.monotonic()
            if not data:
                break
            longest = max(longest, now - last)
            last = now
            offset = 0
            while offset < len(data):
                position = received + offset
                length = min(len(data) - offset, BLOCK - position % BLOCK)
                if data[offset:offset + length] != bytes([(position // BLOCK) % 251]) * length:
                    intact = False
                offset += length
            received += len(data)
    print(json.dumps({"bytes": received, "intact": intact, "longest_gap": round(longest, 3)}))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    else:
        fetch(int(sys.argv[2]))

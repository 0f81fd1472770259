#!/usr/bin/python3
"""Records real Locust 2.12.1 master -> worker frames for the Go protocol tests.

Run from this directory with Debian's python3-locust installed:

    /usr/bin/python3 record_frames.py

It starts a real master (web UI on 127.0.0.1, not headless), joins it with a
pyzmq DEALER that speaks the worker protocol, drives the web UI (POST /swarm,
GET /stop), provokes a `reconnect` with a corrupt frame, SIGTERMs the master
and writes every frame it received as one hex line per file:

    master_ack.hex, master_spawn_1.hex, master_spawn_2.hex, master_reconnect.hex,
    master_stop.hex, master_ack_after_stop.hex, master_quit.hex

It also writes frames that Locust's own Python code encodes (no master
needed): python_client_ready.hex (WorkerRunner's client_ready with -1),
python_heartbeat.hex and python_stats.hex (a WorkerRunner stats report built
with locust.stats.RequestStats), so the Go encoder can be compared with them.
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid

import msgpack
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))

LOCUSTFILE = '''
from locust import HttpUser, task, constant

class Browser(HttpUser):
    weight = 3
    wait_time = constant(1)
    @task
    def index(self):
        self.client.get("/")

class Api(HttpUser):
    weight = 1
    wait_time = constant(1)
    @task
    def items(self):
        self.client.get("/api/items")
'''


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def save(name, frame):
    with open(os.path.join(HERE, name), "w") as f:
        f.write(frame.hex() + "\n")
    print("wrote", name, msgpack.loads(frame, raw=False, strict_map_key=False))


def python_frames():
    from locust.rpc.protocol import Message
    from locust.stats import RequestStats

    node = "recorder_" + "0" * 32
    save("python_client_ready.hex", Message("client_ready", -1, node).serialize())
    save("python_heartbeat.hex", Message("heartbeat", {"state": "running", "current_cpu_usage": 12.5,
                                                       "current_memory_usage": 123456789}, node).serialize())
    st = RequestStats()
    st.log_request("GET", "/", 12.5, 100)
    st.log_request("GET", "/", 145, 100)
    st.log_request("POST", "/orders", 1450.0, 0)
    st.log_error("POST", "/orders", "HTTP 500")
    data = {
        "stats": st.serialize_stats(),
        "stats_total": st.total.get_stripped_report(),
        "errors": st.serialize_errors(),
        "user_classes_count": {"Browser": 3, "Api": 1},
        "user_count": 4,
    }
    save("python_stats.hex", Message("stats", data, node).serialize())


def main():
    python_frames()
    mport, wport = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        lf = os.path.join(tmp, "locustfile.py")
        with open(lf, "w") as f:
            f.write(LOCUSTFILE)
        master = subprocess.Popen(
            ["/usr/bin/locust", "-f", lf, "--master", "--master-bind-host", "127.0.0.1",
             "--master-bind-port", str(mport), "--web-host", "127.0.0.1", "--web-port", str(wport)],
            stdout=sys.stdout, stderr=sys.stderr, start_new_session=True)
        try:
            record(mport, wport, master)
        finally:
            if master.poll() is None:
                os.killpg(master.pid, signal.SIGKILL)


def record(mport, wport, master):
    node = socket.gethostname() + "_" + uuid.uuid4().hex
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, node.encode())
    sock.connect("tcp://127.0.0.1:%d" % mport)

    def send(t, data):
        sock.send(msgpack.dumps((t, data, node)))

    def recv(timeout=10.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if sock.poll(200):
                frame = sock.recv()
                return frame, msgpack.loads(frame, raw=False, strict_map_key=False)
            send("heartbeat", {"state": state[0], "current_cpu_usage": 1.0, "current_memory_usage": 1})
        raise TimeoutError("no frame from master")

    state = ["ready"]
    deadline = time.time() + 15
    while True:  # the master takes a moment to bind
        send("client_ready", -1)
        try:
            frame, msg = recv(2)
            break
        except TimeoutError:
            if time.time() > deadline:
                raise
    assert msg[0] == "ack", msg
    save("master_ack.hex", frame)

    web = "http://127.0.0.1:%d" % wport
    form = urllib.parse.urlencode({"user_count": 2, "spawn_rate": 1, "host": "http://127.0.0.1:8089"}).encode()
    print(urllib.request.urlopen(web + "/swarm", data=form).read())
    for i in (1, 2):
        frame, msg = recv()
        assert msg[0] == "spawn", msg
        save("master_spawn_%d.hex" % i, frame)
        send("spawning", None)
        state[0] = "running"
        send("spawning_complete", {"user_classes_count": msg[1]["user_classes_count"],
                                   "user_count": sum(msg[1]["user_classes_count"].values())})

    # A frame with extra bytes after the message: the master answers `reconnect`.
    sock.send(msgpack.dumps(("heartbeat", {"state": "running", "current_cpu_usage": 1.0}, node)) + b"\xc0")
    frame, msg = recv()
    assert msg[0] == "reconnect", msg
    save("master_reconnect.hex", frame)

    print(urllib.request.urlopen(web + "/stop").read())
    frame, msg = recv()
    assert msg[0] == "stop", msg
    save("master_stop.hex", frame)
    send("client_stopped", None)
    state[0] = "ready"
    send("client_ready", -1)
    frame, msg = recv()
    assert msg[0] == "ack", msg
    save("master_ack_after_stop.hex", frame)

    master.send_signal(signal.SIGTERM)
    frame, msg = recv()
    assert msg[0] == "quit", msg
    save("master_quit.hex", frame)
    master.wait(10)
    sock.close(0)
    ctx.term()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""registry_server.py - a small AeroRegistry (SPEC.md section 11) for the
black-box tests of route-registry: real gRPC (Debian's python3-grpcio), the
messages generated at run time from proto/aeroarc/registry/v1/registry.proto
with protoc --python_out, the methods served through a generic handler with
explicit (de)serializers (no generated service stubs needed).

It keeps what a registry keeps (relays, and each agent's relay), records
every call, counts calls in flight at once per method, and can be told to
misbehave over a plain-text HTTP control port on 127.0.0.1:
  GET /stats                 "key value" lines: calls_<Method>,
                             max_inflight_<Method>, inflight, relays, agents
  GET /relays                "relay_id address grpc_port" lines
  GET /agents                "agent_id relay_id" lines
  GET /calls?method=M        "method agent_id relay_id timestamp_ms" lines
  GET /set?stall_ms=N        every call waits N ms before answering
  GET /set?notfound_relay=N  the next N HeartbeatRelay answer NOT_FOUND
  GET /set?notfound_agent=ID the next HeartbeatAgent of ID answers NOT_FOUND
  GET /set?unavailable_relay=N the next N HeartbeatRelay answer UNAVAILABLE
                             (a transient failure; nothing forgotten)
  GET /set?refuse_agent=ID   every RegisterAgent of ID answers
                             FAILED_PRECONDITION (as if the relay were unknown)
  GET /set?accept_agent=ID   undoes refuse_agent
  GET /place?agent=ID&relay=R  place ID on relay R (as if it moved there)
  GET /forget                drop every relay and agent (a restart, state lost)
  GET /reset                 clear the call records and counters
The registry refuses what the real one refuses: RegisterAgent for a relay
it does not know (FAILED_PRECONDITION), heartbeats of an unknown relay or
agent, or of an agent placed on another relay (NOT_FOUND), an empty relay_id
or a zero timestamp (INVALID_ARGUMENT).

  /usr/bin/python3 registry_server.py --port P --control-port C --proto-dir proto
                                     [--tls-cert PEM --tls-key PEM]
Prints "ready" on stdout once both ports serve.
"""
import argparse
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent import futures

SERVICE = "aeroarc.registry.v1.AeroRegistry"
METHODS = ["RegisterRelay", "HeartbeatRelay", "RegisterAgent", "HeartbeatAgent"]


def load_pb2(proto_dir, gen_dir):
    src = os.path.join("aeroarc", "registry", "v1", "registry.proto")
    protoc = shutil.which("protoc")
    if not protoc:
        raise RuntimeError("protoc not found (Debian: protobuf-compiler)")
    subprocess.run([protoc, "-I", proto_dir, "--python_out=" + gen_dir, src], check=True)
    sys.path.insert(0, gen_dir)
    from aeroarc.registry.v1 import registry_pb2  # noqa: E402 (generated just now)
    return registry_pb2


class Registry:
    def __init__(self, pb, grpc):
        self.pb, self.grpc = pb, grpc
        self.mu = threading.Lock()
        self.relays = {}   # relay_id -> (address, grpc_port)
        self.agents = {}   # agent_id -> relay_id
        self.calls = []    # (method, agent_id, relay_id, timestamp_ms)
        self.count = {m: 0 for m in METHODS}
        self.max_inflight = {m: 0 for m in METHODS}
        self.inflight = {m: 0 for m in METHODS}
        self.stall_ms = 0
        self.notfound_relay = 0
        self.notfound_agents = set()
        self.unavailable_relay = 0
        self.refused_agents = set()

    def enter(self, method, agent_id, relay_id, ts):
        with self.mu:
            self.calls.append((method, agent_id, relay_id, ts))
            self.count[method] += 1
            self.inflight[method] += 1
            self.max_inflight[method] = max(self.max_inflight[method], self.inflight[method])
            stall = self.stall_ms
        if stall:
            time.sleep(stall / 1000.0)  # a slow registry, by request

    def leave(self, method):
        with self.mu:
            self.inflight[method] -= 1

    def handler(self, method):
        pb, grpc = self.pb, self.grpc
        req_type = getattr(pb, method + "Request")
        resp_type = getattr(pb, method + "Response")

        def fields(req):
            if method == "RegisterRelay":
                return "", req.relay.relay_id, req.relay.last_heartbeat_unix_ms
            if method == "HeartbeatRelay":
                return "", req.relay_id, req.timestamp_unix_ms
            if method == "RegisterAgent":
                return req.agent.agent_id, req.relay_id, req.agent.last_heartbeat_unix_ms
            return req.agent_id, req.relay_id, req.timestamp_unix_ms

        def serve(req, ctx):
            agent_id, relay_id, ts = fields(req)
            self.enter(method, agent_id, relay_id, ts)
            try:
                if not relay_id or ts == 0:
                    ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "relay_id and timestamp required")
                with self.mu:
                    code = self.apply(method, req, agent_id, relay_id)
                if code is not None:
                    ctx.abort(code[0], code[1])
                return resp_type()
            finally:
                self.leave(method)

        return grpc.unary_unary_rpc_method_handler(
            serve, request_deserializer=req_type.FromString,
            response_serializer=resp_type.SerializeToString)

    def apply(self, method, req, agent_id, relay_id):
        """The registry's rules; mu held. None, or (code, details)."""
        nf = self.grpc.StatusCode.NOT_FOUND
        if method == "RegisterRelay":
            self.relays[relay_id] = (req.relay.address, req.relay.grpc_port)
        elif method == "HeartbeatRelay":
            if self.unavailable_relay > 0:
                self.unavailable_relay -= 1
                return self.grpc.StatusCode.UNAVAILABLE, "registry unavailable (test)"
            if self.notfound_relay > 0:
                self.notfound_relay -= 1
                return nf, "relay not found (test)"
            if relay_id not in self.relays:
                return nf, "relay not found"
        elif method == "RegisterAgent":
            if relay_id not in self.relays or agent_id in self.refused_agents:
                return self.grpc.StatusCode.FAILED_PRECONDITION, "relay not registered"
            self.agents[agent_id] = relay_id
        else:
            if agent_id in self.notfound_agents:
                self.notfound_agents.discard(agent_id)
                self.agents.pop(agent_id, None)
                return nf, "agent not found (test)"
            if self.agents.get(agent_id) != relay_id:
                return nf, "agent not found on this relay"
        return None

    def control(self, path, q):
        with self.mu:
            if path == "/stats":
                lines = ["calls_%s %d" % (m, self.count[m]) for m in METHODS]
                lines += ["max_inflight_%s %d" % (m, self.max_inflight[m]) for m in METHODS]
                lines += ["inflight %d" % sum(self.inflight.values()),
                          "relays %d" % len(self.relays), "agents %d" % len(self.agents)]
            elif path == "/relays":
                lines = ["%s %s %d" % (r, a, p) for r, (a, p) in sorted(self.relays.items())]
            elif path == "/agents":
                lines = ["%s %s" % (a, r) for a, r in sorted(self.agents.items())]
            elif path == "/calls":
                m = q.get("method", [None])[0]
                lines = ["%s %s %s %d" % c for c in self.calls if m is None or c[0] == m]
            elif path == "/set":
                if "stall_ms" in q:
                    self.stall_ms = int(q["stall_ms"][0])
                if "notfound_relay" in q:
                    self.notfound_relay = int(q["notfound_relay"][0])
                if "unavailable_relay" in q:
                    self.unavailable_relay = int(q["unavailable_relay"][0])
                for a in q.get("notfound_agent", []):
                    self.notfound_agents.add(a)
                for a in q.get("refuse_agent", []):
                    self.refused_agents.add(a)
                for a in q.get("accept_agent", []):
                    self.refused_agents.discard(a)
                lines = ["ok"]
            elif path == "/place":
                self.agents[q["agent"][0]] = q["relay"][0]
                lines = ["ok"]
            elif path == "/forget":
                self.relays.clear()
                self.agents.clear()
                lines = ["ok"]
            elif path == "/reset":
                self.calls.clear()
                for m in METHODS:
                    self.count[m] = self.max_inflight[m] = 0
                lines = ["ok"]
            else:
                return None
        return "".join(line + "\n" for line in lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--control-port", type=int, required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--workers", type=int, default=256)
    ap.add_argument("--tls-cert", help="serve TLS with this PEM certificate (and --tls-key)")
    ap.add_argument("--tls-key")
    args = ap.parse_args()

    gen_dir = tempfile.mkdtemp(prefix="aeroarc-pyreg-")
    try:
        pb = load_pb2(args.proto_dir, gen_dir)
        import grpc
    except Exception as e:
        print("setup_error %s" % e, flush=True)
        return 2
    finally:
        shutil.rmtree(gen_dir, ignore_errors=True)

    reg = Registry(pb, grpc)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers),
                         options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        SERVICE, {m: reg.handler(m) for m in METHODS}),))
    if args.tls_cert:
        with open(args.tls_key, "rb") as k, open(args.tls_cert, "rb") as c:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        bound = server.add_secure_port("127.0.0.1:%d" % args.port, creds)
    else:
        bound = server.add_insecure_port("127.0.0.1:%d" % args.port)
    if bound != args.port:
        print("setup_error cannot bind port %d" % args.port, flush=True)
        return 2
    server.start()

    class Control(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            u = urllib.parse.urlparse(self.path)
            body = reg.control(u.path, urllib.parse.parse_qs(u.query))
            data = (body if body is not None else "not found\n").encode()
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    http.server.ThreadingHTTPServer.allow_reuse_address = True
    ctl = http.server.ThreadingHTTPServer(("127.0.0.1", args.control_port), Control)
    threading.Thread(target=ctl.serve_forever, daemon=True).start()
    print("ready", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

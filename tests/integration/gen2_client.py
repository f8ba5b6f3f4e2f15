#!/usr/bin/python3
"""gen2_client.py - an independent generation-2 agent (SPEC.md section 9) in
Python grpcio, for the black-box tests: a second client that shares no code
with tools/relay_client.

The protobuf module is generated at run time from the canonical
proto/aeroarc/agent/v1/agent.proto with protoc --python_out (messages
only: no grpc service stubs, so only python3-grpcio, python3-protobuf and
protobuf-compiler are needed); the calls go through channel.unary_unary /
channel.stream_stream with explicit (de)serializers.

It registers AGENT, opens TelemetryStream with aero-arc-agent-id and
aero-arc-session-id, sends FRAMES frames (seq 1..N) wrapped in
AgentStreamMessage{telemetry_frame}, waits for their acks, half-closes and
prints one JSON object per line on stdout:
  {"event":"register","session_id":"sess-...","max_inflight":100}
  {"event":"ack","seq":1,"status":"STATUS_OK","frame_id":"","error":""}
  {"event":"message","arm":"set_operation_context"}   (any non-ack arm)
  {"event":"end","code":"OK","details":""}
Exit status 0 only if the stream ended OK with one OK ack with an empty
frame_id for every frame; 1 otherwise; 2 on bad usage or setup failure.

  /usr/bin/python3 gen2_client.py --target 127.0.0.1:50051 --agent py-1 --frames 20 \\
      --proto-dir proto
"""
import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

TELEMETRY_STREAM = "/aeroarc.agent.v1.AgentGateway/TelemetryStream"
REGISTER = "/aeroarc.agent.v1.AgentGateway/Register"


def emit(obj):
    print(json.dumps(obj, sort_keys=True), flush=True)


def load_agent_pb2(proto_dir, gen_dir):
    """protoc --python_out into gen_dir, then import aeroarc.agent.v1.agent_pb2."""
    src = os.path.join("aeroarc", "agent", "v1", "agent.proto")
    protoc = shutil.which("protoc")
    if not protoc:
        raise RuntimeError("protoc not found (Debian: protobuf-compiler)")
    subprocess.run([protoc, "-I", proto_dir, "--python_out=" + gen_dir, src], check=True)
    sys.path.insert(0, gen_dir)
    from aeroarc.agent.v1 import agent_pb2  # noqa: E402 (generated just now)
    return agent_pb2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", required=True)
    ap.add_argument("--agent", required=True)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--proto-dir", required=True, help="the tree's proto/ directory")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds for the whole run")
    ap.add_argument("--no-session-header", action="store_true",
                    help="omit aero-arc-session-id (the first message decides)")
    ap.add_argument("--wal-id", default=None, help="default: a random UUID")
    args = ap.parse_args()

    gen_dir = tempfile.mkdtemp(prefix="aeroarc-pygen-")
    try:
        try:
            pb = load_agent_pb2(args.proto_dir, gen_dir)
            import grpc
        except Exception as e:  # setup, not the relay: exit 2
            emit({"event": "setup_error", "error": str(e)})
            return 2
        return run(pb, grpc, args)
    finally:
        shutil.rmtree(gen_dir, ignore_errors=True)


def run(pb, grpc, args):
    deadline = time.monotonic() + args.timeout
    channel = grpc.insecure_channel(args.target)
    register = channel.unary_unary(REGISTER,
                                   request_serializer=pb.RegisterRequest.SerializeToString,
                                   response_deserializer=pb.RegisterResponse.FromString)
    try:
        reg = register(pb.RegisterRequest(agent_id=args.agent, agent_version="gen2_client.py/1",
                                          platform="linux/amd64",
                                          execution_capabilities=["mavlink_command_v1"]),
                       metadata=[("aero-arc-agent-id", args.agent)], timeout=10)
    except grpc.RpcError as e:
        emit({"event": "end", "code": e.code().name, "details": e.details() or "",
              "during": "register"})
        return 1
    emit({"event": "register", "session_id": reg.session_id, "max_inflight": reg.max_inflight})

    wal_id = args.wal_id if args.wal_id is not None else str(uuid.uuid4())
    acked = threading.Semaphore(0)
    stop = threading.Event()

    def requests():
        for seq in range(1, args.frames + 1):
            f = pb.TelemetryFrame(session_id=reg.session_id, agent_id=args.agent, seq=seq,
                                  sent_at_unix_ns=time.time_ns(),
                                  device_timestamp_sec=time.time(), dialect="common",
                                  msg_id=33, msg_name="GLOBAL_POSITION_INT",
                                  flight_id="py-flight-1", wal_id=wal_id,
                                  raw_mavlink=bytes([0xfd, 1, 2, 3]))
            f.fields["lat"] = "473977418"
            f.fields["lon"] = "85455939"
            yield pb.AgentStreamMessage(telemetry_frame=f)
        # Half-close only once every frame is acked (or the time is up).
        for _ in range(args.frames):
            while not acked.acquire(timeout=0.1):
                if stop.is_set() or time.monotonic() > deadline:
                    return

    stream = channel.stream_stream(TELEMETRY_STREAM,
                                   request_serializer=pb.AgentStreamMessage.SerializeToString,
                                   response_deserializer=pb.RelayStreamMessage.FromString)
    md = [("aero-arc-agent-id", args.agent)]
    if not args.no_session_header:
        md.append(("aero-arc-session-id", reg.session_id))
    ok_acks = 0
    code, details = "OK", ""
    status_name = pb.TelemetryAck.Status.Name
    try:
        for msg in stream(requests(), metadata=md, timeout=max(1.0, deadline - time.monotonic())):
            arm = msg.WhichOneof("payload")
            if arm != "telemetry_ack":
                emit({"event": "message", "arm": arm or "none"})
                continue
            a = msg.telemetry_ack
            try:
                name = status_name(a.status)
            except ValueError:
                name = "STATUS_UNKNOWN"
            emit({"event": "ack", "seq": a.seq, "status": name, "frame_id": a.frame_id,
                  "error": a.error})
            if a.status == pb.TelemetryAck.STATUS_OK and a.frame_id == "":
                ok_acks += 1
            acked.release()
    except grpc.RpcError as e:
        code, details = e.code().name, e.details() or ""
    finally:
        stop.set()
    emit({"event": "end", "code": code, "details": details})
    channel.close()
    return 0 if code == "OK" and ok_acks == args.frames else 1


if __name__ == "__main__":
    sys.exit(main())

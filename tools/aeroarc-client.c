/* aeroarc-client: command-line client of aeroarc-relay for humans and shell
 * tests: register, stream, health, list, get, and the commands of SPEC.md
 * section 10 (set-context, clear-context, arm, disarm). Single-threaded, built on
 * relay_client. Results go to stdout one line each; every failure prints
 * one line; the exit status is 0 only when the command fully succeeded.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "relay_client.h"

#define EXIT_USAGE 2
#define MAX_FIELDS 100000

struct common {
	const char *target;
	int timeout_ms;
	struct rc_opts rc;
};

struct stream_opts {
	const char *agent;
	const char *header; /* NULL: the agent id */
	bool no_header;
	bool no_register;
	bool garbage;
	long frames, window, fields, raw_bytes, hold_s, msg_id;
	const char *msg_name;
	const char *flight;
	const char *session;     /* overrides the registered session id */
	const char *frame_agent; /* overrides agent_id inside frames */
	bool multiplexed;        /* --protocol multiplexed: generation 2 */
	bool no_session_header;
	const char *session_header; /* overrides the aero-arc-session-id value */
	const char *wal_id;         /* NULL: a random UUID for this run */
	const char *intent_id;
	long intent_version;
	enum answer { ANSWER_OK, ANSWER_REJECT, ANSWER_NEVER } answer; /* commands, gen 2 */
};

static void usage(FILE *out)
{
	fputs("usage: aeroarc-client [global options] COMMAND [command options]\n"
	      "\n"
	      "global options:\n"
	      "  --target HOST:PORT     relay address (default 127.0.0.1:50051)\n"
	      "  --timeout MS           deadline of each call / wait (default 10000)\n"
	      "  --token TOKEN          send 'authorization: Bearer TOKEN'\n"
	      "  --ca FILE              PEM roots: connect with TLS\n"
	      "  --cert FILE --key FILE client certificate (with --ca)\n"
	      "  --server-name NAME     name to verify the server certificate against\n"
	      "  --help                 this text\n"
	      "\n"
	      "commands:\n"
	      "  register AGENT [--version V] [--platform P]\n"
	      "      prints: session_id=S max_inflight=N\n"
	      "  stream --agent A [--frames N] [--window W] [--no-register]\n"
	      "         [--header VALUE | --no-header] [--fields K] [--raw-bytes B]\n"
	      "         [--msg-name NAME] [--msg-id ID] [--flight FLIGHT]\n"
	      "         [--session S] [--frame-agent ID] [--garbage] [--hold SECONDS]\n"
	      "         [--protocol seed|multiplexed] [--session-header S | --no-session-header]\n"
	      "         [--answer ok|reject|never]\n"
	      "         [--wal-id UUID] [--intent-id ID] [--intent-version N]\n"
	      "      registers (unless --no-register), streams N frames (seq 1..N, default\n"
	      "      10) keeping at most W unacked (default 10), prints one line per ack:\n"
	      "        ack seq=<seq> status=<STATUS_NAME> frame_id=<id> error=<text>\n"
	      "      and finally: status=<CODE_NAME> <message>\n"
	      "      --header sends VALUE as aero-arc-agent-id (\"\" = empty), --no-header\n"
	      "      omits it; --garbage sends one message that is not a TelemetryFrame;\n"
	      "      --hold keeps the stream open SECONDS after the last ack.\n"
	      "      --answer ok|reject|never (multiplexed): how the relay's commands are\n"
	      "      answered meanwhile: ok applies a Set/Clear and accepts ARM/DISARM, as the\n"
	      "      upstream agent does (default); reject refuses them; never stays silent.\n"
	      "      --protocol multiplexed (default seed) speaks generation 2 (SPEC\n"
	      "      section 9): sends aero-arc-session-id (the registered session, or\n"
	      "      --session-header S; --no-session-header omits it), wraps every frame\n"
	      "      in AgentStreamMessage with wal_id (--wal-id, default a random UUID,\n"
	      "      printed first as wal_id=<uuid>), intent_id and intent_version, and\n"
	      "      reads RelayStreamMessage: acks print as above (frame_id is empty),\n"
	      "      anything else as: message arm=<name> bytes=<n>\n"
	      "      Exit 0 only if the stream ended OK and every frame was acked OK\n"
	      "      (with --garbage always 1: read the status line).\n"
	      "  health [--service S]   prints: serving_status=<NAME>; exit 0 if SERVING\n"
	      "  list                   one line per active drone\n"
	      "  get DRONE              that drone's line\n"
	      "  set-context AGENT --id CMD --flight F --intent I --version N [--aircraft A]\n"
	      "  clear-context AGENT --id CMD (--flight F | --authoritative)\n"
	      "  arm AGENT --id CMD --aircraft A\n"
	      "  disarm AGENT --id CMD --aircraft A\n"
	      "      RelayControl commands (SPEC section 10; need --ca, --cert, --key with\n"
	      "      a certificate the relay's [control] allows). Print the agent's result:\n"
	      "        result command_id=<id> status=<STATUS_NAME> error=<text>\n"
	      "               active_context=<flight>/<intent>/<version>/<aircraft>\n"
	      "        result command_id=<id> aircraft_id=<a> status=<STATUS_NAME> message=<m>\n"
	      "      exit 0 only for APPLIED / ALREADY_APPLIED / ACCEPTED. Reuse the same\n"
	      "      --id to retry a command (the relay never delivers it twice).\n"
	      "\n"
	      "A call that fails prints: status=<CODE_NAME> <message>, and exits 1.\n"
	      "Bad usage exits 2.\n",
	      out);
}

static bool parse_long(const char *opt, const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "aeroarc-client: %s: invalid value \"%s\" (expected %ld..%ld)\n",
			opt, s, min, max);
		return false;
	}
	*out = v;
	return true;
}

/* The value following argv[*i], or NULL (message printed). */
static const char *value_of(int argc, char **argv, int *i)
{
	if (*i + 1 >= argc) {
		fprintf(stderr, "aeroarc-client: %s needs a value\n", argv[*i]);
		return NULL;
	}
	return argv[++*i];
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* "status=CODE[ what][: message]": one line, no trailing blanks. */
static void print_status(const char *what, const struct rc_status *st)
{
	printf("status=%s", rc_status_code_name(st->code));
	if (what)
		printf(" %s%s", what, st->message[0] ? ":" : "");
	if (st->message[0])
		printf(" %s", st->message);
	putchar('\n');
}

static void print_drone(const Aeroarc__Relay__V1__DroneStatus *d)
{
	printf("drone_id=%s session_id=%s agent_id=%s relay_id=%s flight_id=%s "
	       "connected_at_unix_ns=%lld last_heartbeat_unix_ns=%lld\n",
	       d->drone_id, d->session_id, d->agent_id, d->relay_id, d->flight_id,
	       (long long)d->connected_at_unix_ns, (long long)d->last_heartbeat_unix_ns);
}

static int cmd_register(struct rc_channel *ch, const struct common *c, int argc, char **argv)
{
	const char *agent = NULL, *version = "aeroarc-client/1", *platform = "linux/amd64";
	struct rc_register_result r;
	struct rc_status st;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--version")) {
			if (!(version = value_of(argc, argv, &i)))
				return EXIT_USAGE;
		} else if (!strcmp(argv[i], "--platform")) {
			if (!(platform = value_of(argc, argv, &i)))
				return EXIT_USAGE;
		} else if (!agent && (argv[i][0] != '-' || !argv[i][1])) {
			agent = argv[i];
		} else {
			fprintf(stderr, "aeroarc-client: register: unexpected \"%s\"\n", argv[i]);
			return EXIT_USAGE;
		}
	}
	if (!agent) {
		fprintf(stderr, "aeroarc-client: register needs an AGENT id\n");
		return EXIT_USAGE;
	}
	if (rc_register(ch, agent, version, platform, &r, &st, c->timeout_ms)) {
		print_status("register", &st);
		return 1;
	}
	printf("session_id=%s max_inflight=%lld\n", r.session_id, (long long)r.max_inflight);
	return 0;
}

static int parse_stream_opts(int argc, char **argv, struct stream_opts *o)
{
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		bool ok = true;

		if (!strcmp(a, "--no-register")) {
			o->no_register = true;
			continue;
		}
		if (!strcmp(a, "--no-header")) {
			o->no_header = true;
			continue;
		}
		if (!strcmp(a, "--garbage")) {
			o->garbage = true;
			continue;
		}
		if (!strcmp(a, "--no-session-header")) {
			o->no_session_header = true;
			continue;
		}
		if (!(v = value_of(argc, argv, &i)))
			return -EINVAL;
		if (!strcmp(a, "--agent"))
			o->agent = v;
		else if (!strcmp(a, "--header"))
			o->header = v;
		else if (!strcmp(a, "--msg-name"))
			o->msg_name = v;
		else if (!strcmp(a, "--flight"))
			o->flight = v;
		else if (!strcmp(a, "--session"))
			o->session = v;
		else if (!strcmp(a, "--frame-agent"))
			o->frame_agent = v;
		else if (!strcmp(a, "--session-header"))
			o->session_header = v;
		else if (!strcmp(a, "--wal-id"))
			o->wal_id = v;
		else if (!strcmp(a, "--intent-id"))
			o->intent_id = v;
		else if (!strcmp(a, "--intent-version"))
			ok = parse_long(a, v, 0, 0xffffffffL, &o->intent_version);
		else if (!strcmp(a, "--protocol")) {
			if (!strcmp(v, "multiplexed"))
				o->multiplexed = true;
			else if (!strcmp(v, "seed"))
				o->multiplexed = false;
			else {
				fprintf(stderr, "aeroarc-client: --protocol: \"%s\" is neither "
						"seed nor multiplexed\n", v);
				return -EINVAL;
			}
		}
		else if (!strcmp(a, "--answer")) {
			if (!strcmp(v, "ok"))
				o->answer = ANSWER_OK;
			else if (!strcmp(v, "reject"))
				o->answer = ANSWER_REJECT;
			else if (!strcmp(v, "never"))
				o->answer = ANSWER_NEVER;
			else {
				fprintf(stderr, "aeroarc-client: --answer: \"%s\" is not one of "
						"ok, reject, never\n", v);
				return -EINVAL;
			}
		}
		else if (!strcmp(a, "--frames"))
			ok = parse_long(a, v, 0, 1L << 40, &o->frames);
		else if (!strcmp(a, "--window"))
			ok = parse_long(a, v, 1, 1000000, &o->window);
		else if (!strcmp(a, "--fields"))
			ok = parse_long(a, v, 0, MAX_FIELDS, &o->fields);
		else if (!strcmp(a, "--raw-bytes"))
			ok = parse_long(a, v, 0, 64L << 20, &o->raw_bytes);
		else if (!strcmp(a, "--hold"))
			ok = parse_long(a, v, 0, 86400, &o->hold_s);
		else if (!strcmp(a, "--msg-id"))
			ok = parse_long(a, v, 0, 0xffffffffL, &o->msg_id);
		else {
			fprintf(stderr, "aeroarc-client: stream: unknown option \"%s\"\n", a);
			return -EINVAL;
		}
		if (!ok)
			return -EINVAL;
	}
	if (!o->agent) {
		fprintf(stderr, "aeroarc-client: stream needs --agent A\n");
		return -EINVAL;
	}
	return 0;
}

/* MAVLink message ids of the names we know; --msg-id wins. */
static uint32_t msg_id_of(const struct stream_opts *o)
{
	if (o->msg_id >= 0)
		return (uint32_t)o->msg_id;
	if (!strcmp(o->msg_name, "HEARTBEAT"))
		return 0;
	if (!strcmp(o->msg_name, "ATTITUDE"))
		return 30;
	if (!strcmp(o->msg_name, "GLOBAL_POSITION_INT"))
		return 33;
	return 0;
}

/* Field keys and numeric-looking values for the frame, in one allocation
 * the caller frees (keys/values point into it). */
static struct rc_field *make_fields(long n)
{
	static const char *const names[] = { "lat", "lon", "alt", "relative_alt", "vx",
					     "vy", "vz", "hdg", "time_boot_ms" };
	const size_t nn = sizeof names / sizeof names[0], slot = 48;
	struct rc_field *f = malloc((size_t)n * (sizeof *f + 2 * slot) + 1);
	char *text = (char *)(f + n);

	if (!f)
		return NULL;
	for (long i = 0; i < n; i++, text += 2 * slot) {
		if ((size_t)i < nn)
			snprintf(text, slot, "%s", names[i]);
		else
			snprintf(text, slot, "f%ld", i);
		snprintf(text + slot, slot, "%ld", 473977420 + i * 1111);
		f[i].key = text;
		f[i].value = text + slot;
	}
	return f;
}

static uint8_t *make_raw(long n)
{
	uint8_t *raw = malloc((size_t)n + 1);

	if (!raw)
		return NULL;
	for (long i = 0; i < n; i++)
		raw[i] = i == 0 ? 0xfd : (uint8_t)(i * 31 + 7); /* MAVLink v2 magic first */
	return raw;
}

struct stream_run {
	struct rc_stream *s;
	bool multiplexed;
	enum answer answer;
	int timeout_ms;
	struct rc_frame frame;
	long sent, acked, acked_ok;
	bool broken; /* the stream stopped before every frame was acked */
};

/*
 * A command the relay sent down a generation-2 stream, answered as the
 * upstream agent answers (SPEC.md section 10): a Set is applied and echoes
 * its context, a Clear is applied with no context left, ARM/DISARM is
 * accepted for the aircraft named. --answer reject refuses instead;
 * --answer never leaves the relay waiting (its deadline answers). Prints
 * one line either way.
 */
static void answer_command(struct stream_run *r, const struct rc_relay_msg *m)
{
	const Aeroarc__Agent__V1__RelayStreamMessage *in = m->msg;
	bool reject = r->answer == ANSWER_REJECT;
	int rc = 0;

	if (!in) {
		printf("message arm=%s bytes=%zu\n", rc_relay_arm_name(m->arm), m->raw_len);
		return;
	}
	if (in->payload_case == AEROARC__AGENT__V1__RELAY_STREAM_MESSAGE__PAYLOAD_SET_OPERATION_CONTEXT ||
	    in->payload_case == AEROARC__AGENT__V1__RELAY_STREAM_MESSAGE__PAYLOAD_CLEAR_OPERATION_CONTEXT) {
		bool set = in->payload_case ==
			   AEROARC__AGENT__V1__RELAY_STREAM_MESSAGE__PAYLOAD_SET_OPERATION_CONTEXT;
		const char *id = set ? in->set_operation_context->command_id
				     : in->clear_operation_context->command_id;
		printf("command arm=%s command_id=%s answer=%s\n", rc_relay_arm_name(m->arm), id,
		       r->answer == ANSWER_NEVER ? "none" : reject ? "rejected" : "applied");
		if (r->answer == ANSWER_NEVER)
			return;
		Aeroarc__Agent__V1__OperationContextCommandAck ack =
			AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__INIT;
		ack.command_id = (char *)id;
		ack.status = reject ? AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__STATUS__STATUS_REJECTED
				    : AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__STATUS__STATUS_APPLIED;
		ack.error = reject ? "rejected by aeroarc-client --answer reject" : "";
		if (set && !reject)
			ack.active_context = in->set_operation_context->context;
		rc = rc_stream_send_gen2_msg(r->s, RC_AGENT_OPERATION_CONTEXT_COMMAND_ACK, &ack.base,
					     r->timeout_ms);
	} else if (in->payload_case == AEROARC__AGENT__V1__RELAY_STREAM_MESSAGE__PAYLOAD_AIRCRAFT_COMMAND) {
		const Aeroarc__Agent__V1__AircraftCommand *c = in->aircraft_command;
		printf("command arm=%s command_id=%s type=%d answer=%s\n", rc_relay_arm_name(m->arm),
		       c->command_id, (int)c->type,
		       r->answer == ANSWER_NEVER ? "none" : reject ? "rejected" : "accepted");
		if (r->answer == ANSWER_NEVER)
			return;
		Aeroarc__Agent__V1__AircraftCommandResult res =
			AEROARC__AGENT__V1__AIRCRAFT_COMMAND_RESULT__INIT;
		res.command_id = c->command_id;
		res.aircraft_id = c->aircraft_id;
		res.status = reject ? AEROARC__AGENT__V1__AIRCRAFT_COMMAND_RESULT__STATUS__STATUS_REJECTED
				    : AEROARC__AGENT__V1__AIRCRAFT_COMMAND_RESULT__STATUS__STATUS_ACCEPTED;
		res.message = reject ? "rejected by aeroarc-client --answer reject" : "";
		rc = rc_stream_send_gen2_msg(r->s, RC_AGENT_AIRCRAFT_COMMAND_RESULT, &res.base,
					     r->timeout_ms);
	} else {
		printf("message arm=%s bytes=%zu\n", rc_relay_arm_name(m->arm), m->raw_len);
	}
	if (rc)
		fprintf(stderr, "aeroarc-client: the answer could not be sent (%d)\n", rc);
}

/* Generation 2: the next RelayStreamMessage into *ack; commands are
 * answered on the way. Returns as rc_stream_recv_ack. */
static int recv_gen2_ack(struct stream_run *r, struct rc_ack *ack, int timeout_ms)
{
	struct rc_relay_msg m;
	int rc;

	while ((rc = rc_stream_recv_gen2(r->s, &m, timeout_ms)) == 1) {
		if (m.arm == RC_RELAY_TELEMETRY_ACK) {
			*ack = m.ack;
			return 1;
		}
		answer_command(r, &m);
	}
	return rc;
}

/* --hold on a generation-2 stream: keep answering commands until it ends. */
static void hold_answering(struct stream_run *r, long hold_s)
{
	int64_t end = now_ns() + (int64_t)hold_s * 1000000000;
	int64_t left;
	while (!r->broken && (left = (end - now_ns()) / 1000000) > 0) {
		struct rc_relay_msg m;
		int rc = rc_stream_recv_gen2(r->s, &m, (int)left);
		if (rc == 1 && m.arm == RC_RELAY_TELEMETRY_ACK)
			printf("ack seq=%llu status=%s frame_id=%s error=%s\n",
			       (unsigned long long)m.ack.seq, rc_ack_status_name(m.ack.status),
			       m.ack.frame_id, m.ack.error);
		else if (rc == 1)
			answer_command(r, &m);
		else if (rc != -ETIMEDOUT)
			break; /* the stream ended */
	}
}

/* Receive one ack and print it. Returns false when no more acks come. */
static bool recv_one(struct stream_run *r, int timeout_ms)
{
	struct rc_ack ack;
	int rc = r->multiplexed ? recv_gen2_ack(r, &ack, timeout_ms)
				: rc_stream_recv_ack(r->s, &ack, timeout_ms);

	if (rc == 1) {
		printf("ack seq=%llu status=%s frame_id=%s error=%s\n",
		       (unsigned long long)ack.seq, rc_ack_status_name(ack.status), ack.frame_id,
		       ack.error);
		r->acked++;
		if (ack.status == RC_ACK_OK)
			r->acked_ok++;
		return true;
	}
	if (rc == -ETIMEDOUT)
		fprintf(stderr, "aeroarc-client: no ack within %d ms\n", timeout_ms);
	else if (rc == -EBADMSG)
		fprintf(stderr, "aeroarc-client: the server sent something that is not a %s\n",
			r->multiplexed ? "RelayStreamMessage" : "TelemetryAck");
	r->broken = true;
	return false;
}

/* Send frames 1..n keeping at most window unacked, reading acks as they come. */
static void stream_frames(struct stream_run *r, const struct stream_opts *o, int timeout_ms)
{
	while (r->acked < o->frames && !r->broken) {
		while (r->sent < o->frames && r->sent - r->acked < o->window) {
			int64_t t = now_ns();

			r->frame.seq = (uint64_t)++r->sent;
			r->frame.sent_at_unix_ns = t;
			r->frame.device_timestamp_sec = (double)t / 1e9;
			if ((r->multiplexed ? rc_stream_send_gen2_frame
					    : rc_stream_send_frame)(r->s, &r->frame, timeout_ms)) {
				r->sent--; /* not sent: the stream ended; its status says why */
				break;
			}
		}
		if (!recv_one(r, timeout_ms))
			break;
	}
}

static int cmd_stream(struct rc_channel *ch, const struct common *c, int argc, char **argv)
{
	struct stream_opts o = { .frames = 10, .window = 10, .fields = 8, .raw_bytes = 16,
				 .msg_id = -1, .msg_name = "GLOBAL_POSITION_INT" };
	const char *agent_header;
	char wal[37] = "";
	struct rc_register_result reg = { .session_id = "" };
	struct stream_run r = { 0 };
	struct rc_field *fields = NULL;
	uint8_t *raw = NULL;
	struct rc_status st;
	int rc = 1;

	if (parse_stream_opts(argc, argv, &o))
		return EXIT_USAGE;
	if (!o.no_register) {
		if (rc_register(ch, o.agent, "aeroarc-client/1", "linux/amd64", &reg, &st,
				c->timeout_ms)) {
			print_status("register", &st);
			return 1;
		}
		printf("session_id=%s max_inflight=%lld\n", reg.session_id,
		       (long long)reg.max_inflight);
	}
	if (!(fields = make_fields(o.fields)) || !(raw = make_raw(o.raw_bytes))) {
		fprintf(stderr, "aeroarc-client: out of memory\n");
		goto out;
	}
	r.frame = (struct rc_frame){
		.session_id = o.session ? o.session : reg.session_id,
		.agent_id = o.frame_agent ? o.frame_agent : o.agent,
		.raw_mavlink = raw, .raw_mavlink_len = (size_t)o.raw_bytes,
		.dialect = "common", .msg_id = msg_id_of(&o), .msg_name = o.msg_name,
		.fields = fields, .n_fields = (size_t)o.fields, .flight_id = o.flight,
	};
	agent_header = o.no_header ? NULL : o.header ? o.header : o.agent;
	r.multiplexed = o.multiplexed;
	r.answer = o.answer;
	r.timeout_ms = c->timeout_ms;
	if (o.multiplexed) {
		if (o.wal_id)
			snprintf(wal, sizeof wal, "%s", o.wal_id);
		else if (rc_uuid_v4(wal)) {
			fprintf(stderr, "aeroarc-client: no random bytes for a wal_id\n");
			goto out;
		}
		r.frame.wal_id = o.wal_id ? o.wal_id : wal;
		printf("wal_id=%s\n", r.frame.wal_id);
		r.frame.intent_id = o.intent_id;
		r.frame.intent_version = (uint32_t)o.intent_version;
		r.s = rc_stream_open_gen2(ch, agent_header,
					  o.no_session_header ? NULL
					  : o.session_header  ? o.session_header
							      : reg.session_id,
					  NULL, 0, &st);
	} else {
		r.s = rc_stream_open(ch, agent_header, NULL, 0, &st);
	}
	if (!r.s) {
		print_status("stream", &st);
		goto out;
	}
	if (o.garbage) {
		/* A length-delimited field 2 claiming 127 bytes that never come. */
		static const uint8_t junk[] = { 0x12, 0x7f, 0xff, 0xff };

		if (rc_stream_send(r.s, junk, sizeof junk, c->timeout_ms) == 0)
			while (recv_one(&r, c->timeout_ms))
				;
	} else {
		stream_frames(&r, &o, c->timeout_ms);
	}
	if (o.hold_s > 0 && !r.broken && r.multiplexed)
		hold_answering(&r, o.hold_s);
	else if (o.hold_s > 0 && !r.broken)
		sleep((unsigned)o.hold_s);
	if (rc_stream_finish(r.s, &st, c->timeout_ms) == -ETIMEDOUT)
		fprintf(stderr, "aeroarc-client: the stream did not end within %d ms: cancelled\n",
			c->timeout_ms);
	print_status(NULL, &st);
	rc = st.code == 0 && !o.garbage && r.acked_ok == o.frames && r.sent == o.frames ? 0 : 1;
out:
	rc_stream_free(r.s);
	free(fields);
	free(raw);
	return rc;
}

static int cmd_health(struct rc_channel *ch, const struct common *c, int argc, char **argv)
{
	const char *service = "";
	struct rc_status st;
	int serving;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--service")) {
			fprintf(stderr, "aeroarc-client: health: unexpected \"%s\"\n", argv[i]);
			return EXIT_USAGE;
		}
		if (!(service = value_of(argc, argv, &i)))
			return EXIT_USAGE;
	}
	if (rc_health_check(ch, service, &serving, &st, c->timeout_ms)) {
		print_status("health", &st);
		return 1;
	}
	printf("serving_status=%s\n", rc_serving_status_name(serving));
	return serving == RC_HEALTH_SERVING ? 0 : 1;
}

static int cmd_list(struct rc_channel *ch, const struct common *c, int argc, char **argv)
{
	Aeroarc__Relay__V1__ListActiveDronesResponse *resp;
	struct rc_status st;

	if (argc > 0) {
		fprintf(stderr, "aeroarc-client: list: unexpected \"%s\"\n", argv[0]);
		return EXIT_USAGE;
	}
	if (rc_list_active_drones(ch, &resp, &st, c->timeout_ms)) {
		print_status("list", &st);
		return 1;
	}
	for (size_t i = 0; i < resp->n_drones; i++)
		print_drone(resp->drones[i]);
	aeroarc__relay__v1__list_active_drones_response__free_unpacked(resp, NULL);
	return 0;
}

static int cmd_get(struct rc_channel *ch, const struct common *c, int argc, char **argv)
{
	Aeroarc__Relay__V1__GetDroneStatusResponse *resp;
	struct rc_status st;
	int rc = 0;

	if (argc != 1) {
		fprintf(stderr, "aeroarc-client: get needs exactly one DRONE id\n");
		return EXIT_USAGE;
	}
	if (rc_get_drone_status(ch, argv[0], &resp, &st, c->timeout_ms)) {
		print_status("get", &st);
		return 1;
	}
	if (resp->drone) {
		print_drone(resp->drone);
	} else {
		fprintf(stderr, "aeroarc-client: get: OK status but no drone in the response\n");
		rc = 1;
	}
	aeroarc__relay__v1__get_drone_status_response__free_unpacked(resp, NULL);
	return rc;
}

/* ---- RelayControl commands (SPEC.md section 10) ---------------------- */

struct command_opts {
	const char *agent, *id, *flight, *intent, *aircraft;
	long version;
	bool authoritative;
};

/* AGENT then the options `allowed` (a list of names) names. */
static int parse_command(const char *what, int argc, char **argv, const char *allowed,
			 struct command_opts *o)
{
	long v;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *val;
		char key[40];

		if (a[0] != '-') {
			if (o->agent) {
				fprintf(stderr, "aeroarc-client: %s: unexpected \"%s\"\n", what, a);
				return -1;
			}
			o->agent = a;
			continue;
		}
		snprintf(key, sizeof key, " %s ", a);
		if (!strstr(allowed, key)) {
			fprintf(stderr, "aeroarc-client: %s: unknown option \"%s\"\n", what, a);
			return -1;
		}
		if (!strcmp(a, "--authoritative")) {
			o->authoritative = true;
			continue;
		}
		if (!(val = value_of(argc, argv, &i)))
			return -1;
		if (!strcmp(a, "--id"))
			o->id = val;
		else if (!strcmp(a, "--flight"))
			o->flight = val;
		else if (!strcmp(a, "--intent"))
			o->intent = val;
		else if (!strcmp(a, "--aircraft"))
			o->aircraft = val;
		else if (!strcmp(a, "--version")) {
			if (!parse_long(a, val, 1, 4294967295L, &v))
				return -1;
			o->version = v;
		}
	}
	if (!o->agent || !o->id) {
		fprintf(stderr, "aeroarc-client: %s needs AGENT and --id CMD\n", what);
		return -1;
	}
	return 0;
}

static const char *enum_name(const ProtobufCEnumDescriptor *d, int v)
{
	const ProtobufCEnumValue *e = protobuf_c_enum_descriptor_get_value(d, v);

	return e ? e->name : "STATUS_UNKNOWN";
}

/* Pack req, call method; the response bytes or NULL (status printed). */
static uint8_t *control_call(struct rc_channel *ch, const struct common *c, const char *what,
			     const char *method, const ProtobufCMessage *req, size_t *resp_len)
{
	size_t len = protobuf_c_message_get_packed_size(req);
	uint8_t *buf = malloc(len ? len : 1), *resp = NULL;
	struct rc_status st;

	if (!buf) {
		fprintf(stderr, "aeroarc-client: out of memory\n");
		return NULL;
	}
	protobuf_c_message_pack(req, buf);
	*resp_len = 0;
	int rc = rc_unary(ch, method, buf, len, NULL, 0, &resp, resp_len, &st, c->timeout_ms);
	free(buf);
	if (rc) {
		print_status(what, &st);
		return NULL;
	}
	if (!resp)
		resp = calloc(1, 1); /* an empty response: every field default */
	return resp;
}

/* An OperationContextCommandAck: one line; 0 when applied. */
static int print_context_ack(const Aeroarc__Agent__V1__OperationContextCommandAck *a)
{
	const Aeroarc__Agent__V1__OperationContext *x;

	if (!a) {
		fprintf(stderr, "aeroarc-client: OK status but no result in the response\n");
		return 1;
	}
	x = a->active_context;
	printf("result command_id=%s status=%s error=%s active_context=", a->command_id,
	       enum_name(&aeroarc__agent__v1__operation_context_command_ack__status__descriptor,
			 a->status),
	       a->error);
	if (x)
		printf("%s/%s/%u/%s\n", x->flight_id, x->intent_id, (unsigned)x->intent_version,
		       x->aircraft_id);
	else
		printf("\n");
	return a->status == AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__STATUS__STATUS_APPLIED ||
			       a->status ==
				       AEROARC__AGENT__V1__OPERATION_CONTEXT_COMMAND_ACK__STATUS__STATUS_ALREADY_APPLIED
		       ? 0
		       : 1;
}

static int cmd_set_context(struct rc_channel *ch, const struct common *c, int argc, char **argv)
{
	struct command_opts o = { 0 };
	Aeroarc__Agent__V1__OperationContext ctx = AEROARC__AGENT__V1__OPERATION_CONTEXT__INIT;
	Aeroarc__Agent__V1__SetOperationContextCommand cmd =
		AEROARC__AGENT__V1__SET_OPERATION_CONTEXT_COMMAND__INIT;
	Aeroarc__Relay__V1__SetOperationContextRequest req =
		AEROARC__RELAY__V1__SET_OPERATION_CONTEXT_REQUEST__INIT;
	size_t len;
	uint8_t *resp;
	int rc;

	if (parse_command("set-context", argc, argv,
			  " --id --flight --intent --version --aircraft ", &o))
		return EXIT_USAGE;
	if (!o.flight || !o.intent || !o.version) {
		fprintf(stderr, "aeroarc-client: set-context needs --flight, --intent and --version\n");
		return EXIT_USAGE;
	}
	ctx.flight_id = (char *)o.flight;
	ctx.intent_id = (char *)o.intent;
	ctx.intent_version = (uint32_t)o.version;
	if (o.aircraft)
		ctx.aircraft_id = (char *)o.aircraft;
	cmd.command_id = (char *)o.id;
	cmd.context = &ctx;
	req.agent_id = (char *)o.agent;
	req.command = &cmd;
	if (!(resp = control_call(ch, c, "set-context",
				  "/aeroarc.relay.v1.RelayControl/SetOperationContext", &req.base, &len)))
		return 1;
	Aeroarc__Relay__V1__SetOperationContextResponse *r =
		aeroarc__relay__v1__set_operation_context_response__unpack(NULL, len, resp);
	free(resp);
	if (!r) {
		fprintf(stderr, "aeroarc-client: set-context: the response does not decode\n");
		return 1;
	}
	rc = print_context_ack(r->result);
	aeroarc__relay__v1__set_operation_context_response__free_unpacked(r, NULL);
	return rc;
}

static int cmd_clear_context(struct rc_channel *ch, const struct common *c, int argc, char **argv)
{
	struct command_opts o = { 0 };
	Aeroarc__Agent__V1__ClearOperationContextCommand cmd =
		AEROARC__AGENT__V1__CLEAR_OPERATION_CONTEXT_COMMAND__INIT;
	Aeroarc__Relay__V1__ClearOperationContextRequest req =
		AEROARC__RELAY__V1__CLEAR_OPERATION_CONTEXT_REQUEST__INIT;
	size_t len;
	uint8_t *resp;
	int rc;

	if (parse_command("clear-context", argc, argv, " --id --flight --authoritative ", &o))
		return EXIT_USAGE;
	if (!o.flight == !o.authoritative) {
		fprintf(stderr, "aeroarc-client: clear-context needs --flight F or --authoritative\n");
		return EXIT_USAGE;
	}
	cmd.command_id = (char *)o.id;
	if (o.flight)
		cmd.flight_id = (char *)o.flight;
	cmd.authoritative = o.authoritative;
	req.agent_id = (char *)o.agent;
	req.command = &cmd;
	if (!(resp = control_call(ch, c, "clear-context",
				  "/aeroarc.relay.v1.RelayControl/ClearOperationContext", &req.base,
				  &len)))
		return 1;
	Aeroarc__Relay__V1__ClearOperationContextResponse *r =
		aeroarc__relay__v1__clear_operation_context_response__unpack(NULL, len, resp);
	free(resp);
	if (!r) {
		fprintf(stderr, "aeroarc-client: clear-context: the response does not decode\n");
		return 1;
	}
	rc = print_context_ack(r->result);
	aeroarc__relay__v1__clear_operation_context_response__free_unpacked(r, NULL);
	return rc;
}

static int aircraft_command(struct rc_channel *ch, const struct common *c, int argc, char **argv,
			    const char *what, int type)
{
	struct command_opts o = { 0 };
	Aeroarc__Agent__V1__AircraftCommand cmd = AEROARC__AGENT__V1__AIRCRAFT_COMMAND__INIT;
	Aeroarc__Relay__V1__SendAircraftCommandRequest req =
		AEROARC__RELAY__V1__SEND_AIRCRAFT_COMMAND_REQUEST__INIT;
	size_t len;
	uint8_t *resp;
	int rc = 1;

	if (parse_command(what, argc, argv, " --id --aircraft ", &o))
		return EXIT_USAGE;
	if (!o.aircraft) {
		fprintf(stderr, "aeroarc-client: %s needs --aircraft A\n", what);
		return EXIT_USAGE;
	}
	cmd.command_id = (char *)o.id;
	cmd.aircraft_id = (char *)o.aircraft;
	cmd.type = type;
	cmd.issued_at_unix_ms = now_ns() / 1000000;
	req.agent_id = (char *)o.agent;
	req.command = &cmd;
	if (!(resp = control_call(ch, c, what, "/aeroarc.relay.v1.RelayControl/SendAircraftCommand",
				  &req.base, &len)))
		return 1;
	Aeroarc__Relay__V1__SendAircraftCommandResponse *r =
		aeroarc__relay__v1__send_aircraft_command_response__unpack(NULL, len, resp);
	free(resp);
	if (!r || !r->result) {
		fprintf(stderr, "aeroarc-client: %s: no result in the response\n", what);
	} else {
		printf("result command_id=%s aircraft_id=%s status=%s message=%s\n",
		       r->result->command_id, r->result->aircraft_id,
		       enum_name(&aeroarc__agent__v1__aircraft_command_result__status__descriptor,
				 r->result->status),
		       r->result->message);
		rc = r->result->status ==
				     AEROARC__AGENT__V1__AIRCRAFT_COMMAND_RESULT__STATUS__STATUS_ACCEPTED
			     ? 0
			     : 1;
	}
	if (r)
		aeroarc__relay__v1__send_aircraft_command_response__free_unpacked(r, NULL);
	return rc;
}

static int cmd_arm(struct rc_channel *ch, const struct common *c, int argc, char **argv)
{
	return aircraft_command(ch, c, argc, argv, "arm",
				AEROARC__AGENT__V1__AIRCRAFT_COMMAND_TYPE__AIRCRAFT_COMMAND_TYPE_ARM);
}

static int cmd_disarm(struct rc_channel *ch, const struct common *c, int argc, char **argv)
{
	return aircraft_command(ch, c, argc, argv, "disarm",
				AEROARC__AGENT__V1__AIRCRAFT_COMMAND_TYPE__AIRCRAFT_COMMAND_TYPE_DISARM);
}

/* Global options up to the command word; returns its index or -1. */
static int parse_common(int argc, char **argv, struct common *c)
{
	int i;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i], *v;
		long ms;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			exit(0);
		}
		if (!(v = value_of(argc, argv, &i)))
			return -1;
		if (!strcmp(a, "--target"))
			c->target = v;
		else if (!strcmp(a, "--timeout")) {
			if (!parse_long(a, v, 1, 86400000, &ms))
				return -1;
			c->timeout_ms = (int)ms;
		} else if (!strcmp(a, "--token"))
			c->rc.bearer_token = v;
		else if (!strcmp(a, "--ca"))
			c->rc.root_cert_file = v;
		else if (!strcmp(a, "--cert"))
			c->rc.client_cert_file = v;
		else if (!strcmp(a, "--key"))
			c->rc.client_key_file = v;
		else if (!strcmp(a, "--server-name"))
			c->rc.server_name_override = v;
		else {
			fprintf(stderr, "aeroarc-client: unknown option \"%s\" (see --help)\n", a);
			return -1;
		}
	}
	if (i >= argc) {
		fprintf(stderr, "aeroarc-client: no command given (see --help)\n");
		return -1;
	}
	return i;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*run)(struct rc_channel *, const struct common *, int, char **);
	} cmds[] = { { "register", cmd_register }, { "stream", cmd_stream },
		     { "health", cmd_health },     { "list", cmd_list },
		     { "get", cmd_get },	   { "set-context", cmd_set_context },
		     { "clear-context", cmd_clear_context }, { "arm", cmd_arm },
		     { "disarm", cmd_disarm } };
	struct common c = { .target = "127.0.0.1:50051", .timeout_ms = 10000 };
	struct rc_channel *ch;
	struct rc_status st;
	int at, rc;

	setvbuf(stdout, NULL, _IOLBF, 0); /* shell tests read lines while we run */
	if ((at = parse_common(argc, argv, &c)) < 0)
		return EXIT_USAGE;
	for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++) {
		if (strcmp(argv[at], cmds[k].name))
			continue;
		/* One command per process, so the channel is this call's: a
		 * fleet's list is far over gRPC's default 4 MiB. */
		if (cmds[k].run == cmd_list)
			c.rc.max_recv_bytes = RC_LIST_MAX_RECV;
		if (!(ch = rc_connect_opts(c.target, &c.rc, &st))) {
			fprintf(stderr, "aeroarc-client: %s\n", st.message);
			return 1;
		}
		rc = cmds[k].run(ch, &c, argc - at - 1, argv + at + 1);
		rc_close(ch);
		return rc;
	}
	fprintf(stderr, "aeroarc-client: unknown command \"%s\" (see --help)\n", argv[at]);
	return EXIT_USAGE;
}

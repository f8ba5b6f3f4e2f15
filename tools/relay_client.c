/* relay_client: blocking aeroarc-relay client calls over the gRPC C core
 * (contract in relay_client.h). Every unary call and every stream owns a
 * pluck completion queue, so calls on different threads never see each
 * other's events. Keeps no global state and starts no thread of its own.
 */
#include "relay_client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "aeroarc/agent/v1/agent.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#define RC_DEFAULT_MAX_RECV (4 << 20)
#define RC_MAX_USER_MD 16
/* Extra wait after a unary call's own deadline: the deadline ends the call
 * inside gRPC, this only guards against a lost completion. */
#define RC_DEADLINE_SLACK_MS 2000

struct rc_channel {
	grpc_channel *ch;
	char *authorization; /* "Bearer <token>" or NULL */
};

/* Request metadata with slices we own until the batch that sent it is done. */
struct md_list {
	grpc_metadata md[RC_MAX_USER_MD + 4]; /* + authorization, agent, 2 session */
	size_t n;
};

struct rc_stream {
	grpc_completion_queue *cq;
	grpc_call *call;
	struct md_list md;
	grpc_metadata_array recv_md;
	grpc_metadata_array trail_md;
	grpc_status_code code;
	grpc_slice details;
	grpc_byte_buffer *send_bb; /* owned until its send completes */
	grpc_byte_buffer *recv_bb;
	Aeroarc__Agent__V1__TelemetryAck *ack; /* last ack handed out */
	Aeroarc__Agent__V1__RelayStreamMessage *relay_msg; /* last gen-2 message */
	grpc_slice raw; /* bytes of the last message received */
	/* Send-side flags belong to the sending thread, recv-side ones to the
	 * receiving thread; status ones to finish/free, which run alone. */
	bool send_pending, send_failed, closed;
	bool recv_pending, recv_md_asked, recv_eos;
	bool status_pending, status_done;
	/* Their addresses are the completion-queue tags. */
	char send_tag, recv_tag, status_tag;
};

static const char *const status_code_names[] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
	"UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
};

const char *rc_status_code_name(int code)
{
	if (code < 0 || code >= (int)(sizeof status_code_names / sizeof status_code_names[0]))
		return "CODE_OUT_OF_RANGE";
	return status_code_names[code];
}

const char *rc_ack_status_name(int status)
{
	static const char *const names[] = { "STATUS_OK", "STATUS_TEMPORARY_ERROR",
					     "STATUS_PERMANENT_ERROR",
					     "STATUS_RETRY_WITH_BACKOFF" };

	if (status < 0 || status > 3)
		return "STATUS_UNKNOWN";
	return names[status];
}

const char *rc_serving_status_name(int status)
{
	static const char *const names[] = { "UNKNOWN", "SERVING", "NOT_SERVING",
					     "SERVICE_UNKNOWN" };

	if (status < 0 || status > 3)
		return "UNKNOWN";
	return names[status];
}

__attribute__((format(printf, 3, 4)))
static void status_set(struct rc_status *st, int code, const char *fmt, ...)
{
	va_list ap;

	if (!st)
		return;
	st->code = code;
	va_start(ap, fmt);
	vsnprintf(st->message, sizeof st->message, fmt, ap);
	va_end(ap);
}

static void status_from_grpc(struct rc_status *st, grpc_status_code code, grpc_slice details)
{
	size_t n = GRPC_SLICE_LENGTH(details);

	if (!st)
		return;
	if (n >= sizeof st->message)
		n = sizeof st->message - 1;
	st->code = (int)code;
	memcpy(st->message, GRPC_SLICE_START_PTR(details), n);
	st->message[n] = '\0';
}

static gpr_timespec deadline_in(int timeout_ms)
{
	if (timeout_ms <= 0)
		return gpr_inf_future(GPR_CLOCK_MONOTONIC);
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
			    gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

static const char *str_or_empty(const char *s)
{
	return s ? s : "";
}

/* Wait for tag until deadline. Returns false on timeout; otherwise true,
 * with *ok telling whether the batch succeeded. */
static bool cq_wait(grpc_completion_queue *cq, void *tag, gpr_timespec deadline, bool *ok)
{
	grpc_event ev = grpc_completion_queue_pluck(cq, tag, deadline, NULL);

	if (ev.type == GRPC_QUEUE_TIMEOUT)
		return false;
	*ok = ev.type == GRPC_OP_COMPLETE && ev.success;
	return true;
}

static void cq_destroy(grpc_completion_queue *cq)
{
	if (!cq)
		return;
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL)
		       .type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
}

static void md_add(struct md_list *l, const char *key, const char *value)
{
	grpc_metadata *m = &l->md[l->n++];

	memset(m, 0, sizeof *m);
	m->key = grpc_slice_from_copied_string(key);
	m->value = grpc_slice_from_copied_string(value);
}

/* Channel authorization, then the agent header (unless NULL), then the
 * session header as mode says, then md. */
static int md_build_session(struct md_list *l, const struct rc_channel *ch,
			    const char *agent_header, const char *session,
			    enum rc_session_header mode, const struct rc_md *md, size_t n_md,
			    struct rc_status *st)
{
	l->n = 0;
	if (n_md > RC_MAX_USER_MD) {
		status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
			   "client: too many metadata entries (%zu, at most %d)", n_md,
			   RC_MAX_USER_MD);
		return -EINVAL;
	}
	if (ch->authorization)
		md_add(l, "authorization", ch->authorization);
	if (agent_header)
		md_add(l, RC_AGENT_ID_HEADER, agent_header);
	if (mode == RC_SESSION_HEADER_ONCE || mode == RC_SESSION_HEADER_TWICE)
		md_add(l, RC_SESSION_ID_HEADER, str_or_empty(session));
	if (mode == RC_SESSION_HEADER_TWICE)
		md_add(l, RC_SESSION_ID_HEADER, str_or_empty(session));
	for (size_t i = 0; i < n_md; i++)
		md_add(l, str_or_empty(md[i].key), str_or_empty(md[i].value));
	return 0;
}

static int md_build(struct md_list *l, const struct rc_channel *ch, const char *agent_header,
		    const struct rc_md *md, size_t n_md, struct rc_status *st)
{
	return md_build_session(l, ch, agent_header, NULL, RC_SESSION_HEADER_OMIT, md, n_md, st);
}

static void md_free(struct md_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		grpc_slice_unref(l->md[i].key);
		grpc_slice_unref(l->md[i].value);
	}
	l->n = 0;
}

static grpc_byte_buffer *bb_from(const uint8_t *bytes, size_t len)
{
	grpc_slice s = grpc_slice_from_copied_buffer((const char *)bytes, len);
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);

	grpc_slice_unref(s);
	return bb;
}

/* Flatten a received message; the caller unrefs the slice. */
static int bb_flatten(grpc_byte_buffer *bb, grpc_slice *out)
{
	grpc_byte_buffer_reader r;

	if (!grpc_byte_buffer_reader_init(&r, bb))
		return -EBADMSG;
	*out = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	return 0;
}

static grpc_call *call_create(struct rc_channel *ch, grpc_completion_queue *cq,
			      const char *method, gpr_timespec deadline)
{
	grpc_slice m = grpc_slice_from_copied_string(method);
	grpc_call *c = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m,
						NULL, deadline, NULL);

	grpc_slice_unref(m);
	return c;
}

static char *read_file(const char *path, struct rc_status *st)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f) {
		status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "client: cannot open %s: %s", path,
			   strerror(errno));
		return NULL;
	}
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET))
		goto fail;
	buf = malloc((size_t)n + 1);
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
		goto fail;
	buf[n] = '\0';
	fclose(f);
	return buf;
fail:
	status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "client: cannot read %s", path);
	free(buf);
	fclose(f);
	return NULL;
}

static grpc_channel_credentials *creds_create(const struct rc_opts *o, struct rc_status *st)
{
	grpc_ssl_pem_key_cert_pair pair = { 0 };
	grpc_channel_credentials *creds = NULL;
	char *root = NULL, *cert = NULL, *key = NULL;

	if (!o->root_cert_file) {
		if (o->client_cert_file || o->client_key_file)
			status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
				   "client: a client certificate needs root_cert_file (TLS)");
		else
			creds = grpc_insecure_credentials_create();
		return creds;
	}
	if (!(o->client_cert_file) != !(o->client_key_file)) {
		status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
			   "client: client_cert_file and client_key_file go together");
		return NULL;
	}
	if (!(root = read_file(o->root_cert_file, st)))
		goto out;
	if (o->client_cert_file) {
		if (!(cert = read_file(o->client_cert_file, st)) ||
		    !(key = read_file(o->client_key_file, st)))
			goto out;
		pair.cert_chain = cert;
		pair.private_key = key;
	}
	/* grpc copies the PEM strings. */
	creds = grpc_ssl_credentials_create(root, cert ? &pair : NULL, NULL, NULL);
	if (!creds)
		status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "client: bad TLS credentials");
out:
	free(root);
	free(cert);
	free(key);
	return creds;
}

struct rc_channel *rc_connect(const char *target)
{
	return rc_connect_opts(target, NULL, NULL);
}

struct rc_channel *rc_connect_opts(const char *target, const struct rc_opts *opts,
				   struct rc_status *st)
{
	static const struct rc_opts none;
	grpc_channel_credentials *creds;
	struct rc_channel *ch;
	grpc_arg args[8];
	grpc_channel_args ca = { 0, args };

	if (!opts)
		opts = &none;
	status_set(st, GRPC_STATUS_OK, "%s", "");
	if (!target || !*target) {
		status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "client: empty target");
		return NULL;
	}
	ch = calloc(1, sizeof *ch);
	if (!ch) {
		status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "client: out of memory");
		return NULL;
	}
	grpc_init();
	if (opts->bearer_token && asprintf(&ch->authorization, "Bearer %s", opts->bearer_token) < 0) {
		ch->authorization = NULL;
		status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "client: out of memory");
		goto fail;
	}
	if (!(creds = creds_create(opts, st)))
		goto fail;
	/* A connection per rc_channel, as loadgen does: channels with equal
	 * targets would otherwise share one subchannel. */
	args[ca.num_args].type = GRPC_ARG_INTEGER;
	args[ca.num_args].key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
	args[ca.num_args++].value.integer = 1;
	args[ca.num_args].type = GRPC_ARG_INTEGER;
	args[ca.num_args].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	args[ca.num_args++].value.integer =
		opts->max_recv_bytes > 0 ? opts->max_recv_bytes : RC_DEFAULT_MAX_RECV;
	if (opts->server_name_override) {
		args[ca.num_args].type = GRPC_ARG_STRING;
		args[ca.num_args].key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
		args[ca.num_args++].value.string = (char *)opts->server_name_override;
	}
	if (opts->keepalive_time_ms > 0) {
		args[ca.num_args].type = GRPC_ARG_INTEGER;
		args[ca.num_args].key = GRPC_ARG_KEEPALIVE_TIME_MS;
		args[ca.num_args++].value.integer = opts->keepalive_time_ms;
		args[ca.num_args].type = GRPC_ARG_INTEGER;
		args[ca.num_args].key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS;
		args[ca.num_args++].value.integer = 1;
		args[ca.num_args].type = GRPC_ARG_INTEGER;
		args[ca.num_args].key = GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA;
		args[ca.num_args++].value.integer = 0;
	}
	if (opts->recv_window_bytes > 0) {
		args[ca.num_args].type = GRPC_ARG_INTEGER;
		args[ca.num_args].key = GRPC_ARG_HTTP2_BDP_PROBE;
		args[ca.num_args++].value.integer = 0;
		args[ca.num_args].type = GRPC_ARG_INTEGER;
		args[ca.num_args].key = GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES;
		args[ca.num_args++].value.integer = opts->recv_window_bytes;
	}
	ch->ch = grpc_channel_create(target, creds, &ca);
	grpc_channel_credentials_release(creds);
	if (!ch->ch) {
		status_set(st, GRPC_STATUS_INTERNAL, "client: cannot create channel to %s", target);
		goto fail;
	}
	return ch;
fail:
	free(ch->authorization);
	free(ch);
	grpc_shutdown();
	return NULL;
}

void rc_close(struct rc_channel *ch)
{
	if (!ch)
		return;
	grpc_channel_destroy(ch->ch);
	free(ch->authorization);
	free(ch);
	grpc_shutdown();
}

struct grpc_channel *rc_channel_grpc(struct rc_channel *ch)
{
	return ch->ch;
}

const char *rc_channel_authorization(const struct rc_channel *ch)
{
	return ch->authorization;
}

/* The state of one unary call, so setup and teardown read in one place. */
struct unary {
	grpc_completion_queue *cq;
	grpc_call *call;
	struct md_list md;
	grpc_metadata_array init_md, trail_md;
	grpc_byte_buffer *req_bb, *resp_bb;
	grpc_status_code code;
	grpc_slice details;
};

static void unary_free(struct unary *u)
{
	if (u->call)
		grpc_call_unref(u->call);
	cq_destroy(u->cq);
	md_free(&u->md);
	grpc_metadata_array_destroy(&u->init_md);
	grpc_metadata_array_destroy(&u->trail_md);
	if (u->req_bb)
		grpc_byte_buffer_destroy(u->req_bb);
	if (u->resp_bb)
		grpc_byte_buffer_destroy(u->resp_bb);
	grpc_slice_unref(u->details);
}

/* Start the whole call as one batch and wait for it. Returns 0 when the
 * call completed (any status: see u->code), -errno when it could not run. */
static int unary_run(struct unary *u, struct rc_channel *ch, const char *method, int timeout_ms,
		     struct rc_status *st)
{
	gpr_timespec deadline = deadline_in(timeout_ms);
	grpc_op ops[6], *op = ops;
	grpc_call_error err;
	bool ok;

	u->cq = grpc_completion_queue_create_for_pluck(NULL);
	u->call = call_create(ch, u->cq, method, deadline);
	if (!u->call) {
		status_set(st, GRPC_STATUS_INTERNAL, "client: cannot create call %s", method);
		return -ENOMEM;
	}
	memset(ops, 0, sizeof ops);
	op->op = GRPC_OP_SEND_INITIAL_METADATA;
	op->data.send_initial_metadata.count = u->md.n;
	op->data.send_initial_metadata.metadata = u->md.md;
	op++;
	op->op = GRPC_OP_SEND_MESSAGE;
	op->data.send_message.send_message = u->req_bb;
	op++;
	op->op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	op++;
	op->op = GRPC_OP_RECV_INITIAL_METADATA;
	op->data.recv_initial_metadata.recv_initial_metadata = &u->init_md;
	op++;
	op->op = GRPC_OP_RECV_MESSAGE;
	op->data.recv_message.recv_message = &u->resp_bb;
	op++;
	op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	op->data.recv_status_on_client.trailing_metadata = &u->trail_md;
	op->data.recv_status_on_client.status = &u->code;
	op->data.recv_status_on_client.status_details = &u->details;
	op++;
	err = grpc_call_start_batch(u->call, ops, (size_t)(op - ops), u, NULL);
	if (err != GRPC_CALL_OK) {
		status_set(st, err == GRPC_CALL_ERROR_INVALID_METADATA ? GRPC_STATUS_INVALID_ARGUMENT
								       : GRPC_STATUS_INTERNAL,
			   "client: cannot start %s: %s", method, grpc_call_error_to_string(err));
		return -EINVAL;
	}
	if (timeout_ms > 0)
		deadline = gpr_time_add(deadline,
					gpr_time_from_millis(RC_DEADLINE_SLACK_MS, GPR_TIMESPAN));
	if (!cq_wait(u->cq, u, deadline, &ok)) {
		grpc_call_cancel(u->call, NULL);
		cq_wait(u->cq, u, gpr_inf_future(GPR_CLOCK_MONOTONIC), &ok);
	}
	return 0;
}

int rc_unary(struct rc_channel *ch, const char *method, const uint8_t *req, size_t len,
	     const struct rc_md *md, size_t n_md, uint8_t **resp, size_t *resp_len,
	     struct rc_status *st, int timeout_ms)
{
	struct unary u = { .code = GRPC_STATUS_UNKNOWN, .details = grpc_empty_slice() };
	grpc_slice body;
	int rc;

	*resp = NULL;
	*resp_len = 0;
	grpc_metadata_array_init(&u.init_md);
	grpc_metadata_array_init(&u.trail_md);
	if ((rc = md_build(&u.md, ch, NULL, md, n_md, st)))
		goto out;
	u.req_bb = bb_from(req, req ? len : 0);
	if ((rc = unary_run(&u, ch, method, timeout_ms, st)))
		goto out;
	status_from_grpc(st, u.code, u.details);
	if (u.code != GRPC_STATUS_OK) {
		rc = -EIO;
		goto out;
	}
	if (!u.resp_bb || bb_flatten(u.resp_bb, &body)) {
		status_set(st, GRPC_STATUS_INTERNAL, "client: %s returned OK without a message",
			   method);
		rc = -EBADMSG;
		goto out;
	}
	*resp_len = GRPC_SLICE_LENGTH(body);
	*resp = *resp_len ? malloc(*resp_len) : NULL;
	if (*resp_len && !*resp) {
		*resp_len = 0;
		status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "client: out of memory");
		rc = -ENOMEM;
	} else if (*resp_len) {
		memcpy(*resp, GRPC_SLICE_START_PTR(body), *resp_len);
	}
	grpc_slice_unref(body);
out:
	unary_free(&u);
	return rc;
}

/* rc_unary with protobuf-c messages on both sides; *out is decoded with
 * resp_desc and freed by the caller. */
static int unary_msg(struct rc_channel *ch, const char *method, const ProtobufCMessage *req,
		     const struct rc_md *md, size_t n_md,
		     const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **out,
		     struct rc_status *st, int timeout_ms)
{
	size_t len = protobuf_c_message_get_packed_size(req), resp_len;
	uint8_t *buf = malloc(len ? len : 1), *resp = NULL;
	int rc;

	*out = NULL;
	if (!buf) {
		status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "client: out of memory");
		return -ENOMEM;
	}
	protobuf_c_message_pack(req, buf);
	rc = rc_unary(ch, method, buf, len, md, n_md, &resp, &resp_len, st, timeout_ms);
	free(buf);
	if (rc)
		return rc;
	*out = protobuf_c_message_unpack(resp_desc, NULL, resp_len, resp);
	free(resp);
	if (!*out) {
		status_set(st, GRPC_STATUS_INTERNAL, "client: cannot decode %s response",
			   method);
		return -EBADMSG;
	}
	return 0;
}

int rc_register(struct rc_channel *ch, const char *agent_id, const char *version,
		const char *platform, struct rc_register_result *out, struct rc_status *st,
		int timeout_ms)
{
	return rc_register_caps(ch, agent_id, version, platform, NULL, 0, out, st, timeout_ms);
}

int rc_register_caps(struct rc_channel *ch, const char *agent_id, const char *version,
		     const char *platform, const char *const *caps, size_t n_caps,
		     struct rc_register_result *out, struct rc_status *st, int timeout_ms)
{
	Aeroarc__Agent__V1__RegisterRequest req = AEROARC__AGENT__V1__REGISTER_REQUEST__INIT;
	Aeroarc__Agent__V1__RegisterResponse *resp;
	struct rc_md hdr = { RC_AGENT_ID_HEADER, agent_id };
	int rc;

	req.agent_id = (char *)str_or_empty(agent_id);
	req.agent_version = (char *)str_or_empty(version);
	req.platform = (char *)str_or_empty(platform);
	if (n_caps) {
		if (!(req.execution_capabilities = calloc(n_caps, sizeof(char *)))) {
			status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "client: out of memory");
			return -ENOMEM;
		}
		for (size_t i = 0; i < n_caps; i++)
			req.execution_capabilities[i] = (char *)str_or_empty(caps[i]);
		req.n_execution_capabilities = n_caps;
	}
	rc = unary_msg(ch, RC_METHOD_REGISTER, &req.base, &hdr, agent_id && *agent_id ? 1 : 0,
		       &aeroarc__agent__v1__register_response__descriptor,
		       (ProtobufCMessage **)&resp, st, timeout_ms);
	free(req.execution_capabilities);
	if (rc)
		return rc;
	if (out) {
		snprintf(out->agent_id, sizeof out->agent_id, "%s", resp->agent_id);
		snprintf(out->session_id, sizeof out->session_id, "%s", resp->session_id);
		out->max_inflight = resp->max_inflight;
		out->durable_flight_completion = resp->durable_flight_completion;
	}
	aeroarc__agent__v1__register_response__free_unpacked(resp, NULL);
	return 0;
}

int rc_health_check(struct rc_channel *ch, const char *service, int *serving_status,
		    struct rc_status *st, int timeout_ms)
{
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	Grpc__Health__V1__HealthCheckResponse *resp;
	int rc;

	req.service = (char *)str_or_empty(service);
	rc = unary_msg(ch, RC_METHOD_HEALTH_CHECK, &req.base, NULL, 0,
		       &grpc__health__v1__health_check_response__descriptor,
		       (ProtobufCMessage **)&resp, st, timeout_ms);
	if (rc)
		return rc;
	*serving_status = (int)resp->status;
	grpc__health__v1__health_check_response__free_unpacked(resp, NULL);
	return 0;
}

int rc_list_active_drones(struct rc_channel *ch,
			  Aeroarc__Relay__V1__ListActiveDronesResponse **out,
			  struct rc_status *st, int timeout_ms)
{
	Aeroarc__Relay__V1__ListActiveDronesRequest req =
		AEROARC__RELAY__V1__LIST_ACTIVE_DRONES_REQUEST__INIT;

	return unary_msg(ch, RC_METHOD_LIST_ACTIVE_DRONES, &req.base, NULL, 0,
			 &aeroarc__relay__v1__list_active_drones_response__descriptor,
			 (ProtobufCMessage **)out, st, timeout_ms);
}

int rc_get_drone_status(struct rc_channel *ch, const char *drone_id,
			Aeroarc__Relay__V1__GetDroneStatusResponse **out, struct rc_status *st,
			int timeout_ms)
{
	Aeroarc__Relay__V1__GetDroneStatusRequest req =
		AEROARC__RELAY__V1__GET_DRONE_STATUS_REQUEST__INIT;

	req.drone_id = (char *)str_or_empty(drone_id);
	return unary_msg(ch, RC_METHOD_GET_DRONE_STATUS, &req.base, NULL, 0,
			 &aeroarc__relay__v1__get_drone_status_response__descriptor,
			 (ProtobufCMessage **)out, st, timeout_ms);
}

int rc_frame_encode(const struct rc_frame *f, uint8_t **out, size_t *len)
{
	Aeroarc__Agent__V1__TelemetryFrame m = AEROARC__AGENT__V1__TELEMETRY_FRAME__INIT;
	Aeroarc__Agent__V1__TelemetryFrame__FieldsEntry *entries = NULL, **ptrs = NULL;
	int rc = -ENOMEM;

	*out = NULL;
	*len = 0;
	if (f->n_fields) {
		entries = calloc(f->n_fields, sizeof *entries);
		ptrs = calloc(f->n_fields, sizeof *ptrs);
		if (!entries || !ptrs)
			goto out;
	}
	for (size_t i = 0; i < f->n_fields; i++) {
		protobuf_c_message_init(&aeroarc__agent__v1__telemetry_frame__fields_entry__descriptor,
					&entries[i]);
		entries[i].key = (char *)str_or_empty(f->fields[i].key);
		entries[i].value = (char *)str_or_empty(f->fields[i].value);
		ptrs[i] = &entries[i];
	}
	m.session_id = (char *)str_or_empty(f->session_id);
	m.agent_id = (char *)str_or_empty(f->agent_id);
	m.seq = f->seq;
	m.sent_at_unix_ns = f->sent_at_unix_ns;
	m.device_timestamp_sec = f->device_timestamp_sec;
	m.raw_mavlink.data = (uint8_t *)f->raw_mavlink;
	m.raw_mavlink.len = f->raw_mavlink ? f->raw_mavlink_len : 0;
	m.dialect = (char *)str_or_empty(f->dialect);
	m.msg_id = f->msg_id;
	m.msg_name = (char *)str_or_empty(f->msg_name);
	m.n_fields = f->n_fields;
	m.fields = ptrs;
	m.flight_id = (char *)str_or_empty(f->flight_id);
	m.intent_id = (char *)str_or_empty(f->intent_id);
	m.intent_version = f->intent_version;
	m.wal_id = (char *)str_or_empty(f->wal_id);
	*len = aeroarc__agent__v1__telemetry_frame__get_packed_size(&m);
	if (!(*out = malloc(*len ? *len : 1))) {
		*len = 0;
		goto out;
	}
	aeroarc__agent__v1__telemetry_frame__pack(&m, *out);
	rc = 0;
out:
	free(entries);
	free(ptrs);
	return rc;
}

static int stream_start(struct rc_stream *s, grpc_op *ops, size_t n, void *tag)
{
	return grpc_call_start_batch(s->call, ops, n, tag, NULL) == GRPC_CALL_OK ? 0 : -EIO;
}

static struct rc_stream *stream_open(struct rc_channel *ch, const char *method,
				      gpr_timespec deadline, const char *agent_id_header,
				      const char *session, enum rc_session_header mode,
				      const struct rc_md *md, size_t n_md, struct rc_status *st)
{
	struct rc_stream *s = calloc(1, sizeof *s);
	grpc_op op;

	status_set(st, GRPC_STATUS_OK, "%s", "");
	if (!s) {
		status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "client: out of memory");
		return NULL;
	}
	s->details = grpc_empty_slice();
	s->raw = grpc_empty_slice();
	grpc_metadata_array_init(&s->recv_md);
	grpc_metadata_array_init(&s->trail_md);
	if (md_build_session(&s->md, ch, agent_id_header, session, mode, md, n_md, st))
		goto fail;
	s->cq = grpc_completion_queue_create_for_pluck(NULL);
	s->call = call_create(ch, s->cq, method, deadline);
	if (!s->call) {
		status_set(st, GRPC_STATUS_INTERNAL, "client: cannot create the stream call");
		goto fail;
	}
	memset(&op, 0, sizeof op);
	op.op = GRPC_OP_SEND_INITIAL_METADATA;
	op.data.send_initial_metadata.count = s->md.n;
	op.data.send_initial_metadata.metadata = s->md.md;
	if (stream_start(s, &op, 1, &s->send_tag)) {
		status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
			   "client: cannot send stream metadata (invalid key or value?)");
		goto fail;
	}
	s->send_pending = true;
	/* Posted now so the status is collected whenever the server ends. */
	memset(&op, 0, sizeof op);
	op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	op.data.recv_status_on_client.trailing_metadata = &s->trail_md;
	op.data.recv_status_on_client.status = &s->code;
	op.data.recv_status_on_client.status_details = &s->details;
	if (stream_start(s, &op, 1, &s->status_tag)) {
		status_set(st, GRPC_STATUS_INTERNAL, "client: cannot start the stream status");
		goto fail;
	}
	s->status_pending = true;
	return s;
fail:
	rc_stream_free(s);
	return NULL;
}

struct rc_stream *rc_stream_open(struct rc_channel *ch, const char *agent_id_header,
				 const struct rc_md *md, size_t n_md, struct rc_status *st)
{
	return stream_open(ch, RC_METHOD_TELEMETRY_STREAM, gpr_inf_future(GPR_CLOCK_MONOTONIC),
			   agent_id_header, NULL, RC_SESSION_HEADER_OMIT, md, n_md, st);
}

struct rc_stream *rc_stream_open_gen2(struct rc_channel *ch, const char *agent_id_header,
				      const char *session_id, const struct rc_md *md,
				      size_t n_md, struct rc_status *st)
{
	return stream_open(ch, RC_METHOD_TELEMETRY_STREAM, gpr_inf_future(GPR_CLOCK_MONOTONIC),
			   agent_id_header, session_id,
			   session_id ? RC_SESSION_HEADER_ONCE : RC_SESSION_HEADER_OMIT, md, n_md,
			   st);
}

struct rc_stream *rc_stream_open_gen2_hdr(struct rc_channel *ch, const char *agent_id_header,
					  const char *session_id, enum rc_session_header mode,
					  const struct rc_md *md, size_t n_md,
					  struct rc_status *st)
{
	return stream_open(ch, RC_METHOD_TELEMETRY_STREAM, gpr_inf_future(GPR_CLOCK_MONOTONIC),
			   agent_id_header, session_id, mode, md, n_md, st);
}

struct rc_stream *rc_stream_open_method(struct rc_channel *ch, const char *method,
					int timeout_ms, struct rc_status *st)
{
	return stream_open(ch, method, deadline_in(timeout_ms), NULL, NULL,
			   RC_SESSION_HEADER_OMIT, NULL, 0, st);
}

/* Collect the outstanding send (message or half-close), if any. */
static int send_wait(struct rc_stream *s, gpr_timespec deadline)
{
	bool ok;

	if (!s->send_pending)
		return 0;
	if (!cq_wait(s->cq, &s->send_tag, deadline, &ok))
		return -ETIMEDOUT;
	s->send_pending = false;
	if (s->send_bb) {
		grpc_byte_buffer_destroy(s->send_bb);
		s->send_bb = NULL;
	}
	if (!ok)
		s->send_failed = true;
	return 0;
}

int rc_stream_send(struct rc_stream *s, const uint8_t *bytes, size_t len, int timeout_ms)
{
	grpc_op op;
	int rc;

	if ((rc = send_wait(s, deadline_in(timeout_ms))))
		return rc;
	if (s->send_failed || s->closed)
		return -EPIPE;
	memset(&op, 0, sizeof op);
	op.op = GRPC_OP_SEND_MESSAGE;
	op.data.send_message.send_message = bb_from(bytes, bytes ? len : 0);
	if (stream_start(s, &op, 1, &s->send_tag)) {
		grpc_byte_buffer_destroy(op.data.send_message.send_message);
		s->send_failed = true;
		return -EPIPE;
	}
	s->send_bb = op.data.send_message.send_message;
	s->send_pending = true;
	return 0;
}

int rc_stream_send_frame(struct rc_stream *s, const struct rc_frame *f, int timeout_ms)
{
	uint8_t *buf;
	size_t len;
	int rc;

	if ((rc = rc_frame_encode(f, &buf, &len)))
		return rc;
	rc = rc_stream_send(s, buf, len, timeout_ms);
	free(buf);
	return rc;
}

static int close_send_until(struct rc_stream *s, gpr_timespec deadline)
{
	grpc_op op;
	int rc;

	if ((rc = send_wait(s, deadline)))
		return rc;
	if (s->closed)
		return 0;
	if (s->send_failed)
		return -EPIPE;
	memset(&op, 0, sizeof op);
	op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	if (stream_start(s, &op, 1, &s->send_tag)) {
		s->send_failed = true;
		return -EPIPE;
	}
	s->send_pending = true;
	s->closed = true;
	return 0;
}

int rc_stream_close_send(struct rc_stream *s, int timeout_ms)
{
	return close_send_until(s, deadline_in(timeout_ms));
}

/* Post a receive (with the initial metadata the first time). */
static int recv_post(struct rc_stream *s)
{
	grpc_op ops[2], *op = ops;

	memset(ops, 0, sizeof ops);
	if (!s->recv_md_asked) {
		op->op = GRPC_OP_RECV_INITIAL_METADATA;
		op->data.recv_initial_metadata.recv_initial_metadata = &s->recv_md;
		op++;
	}
	op->op = GRPC_OP_RECV_MESSAGE;
	op->data.recv_message.recv_message = &s->recv_bb;
	op++;
	if (stream_start(s, ops, (size_t)(op - ops), &s->recv_tag))
		return -EIO;
	s->recv_md_asked = true;
	s->recv_pending = true;
	return 0;
}

/* Wait for the next message into s->raw. RETURN 1, 0 at end of stream,
 * -ETIMEDOUT, -EBADMSG when its bytes cannot be read. */
static int recv_raw(struct rc_stream *s, gpr_timespec deadline)
{
	bool ok;
	int rc;

	if (s->recv_eos)
		return 0;
	if (!s->recv_pending && recv_post(s)) {
		s->recv_eos = true;
		return 0;
	}
	if (!cq_wait(s->cq, &s->recv_tag, deadline, &ok))
		return -ETIMEDOUT;
	s->recv_pending = false;
	if (!ok || !s->recv_bb) {
		s->recv_eos = true;
		if (s->recv_bb)
			grpc_byte_buffer_destroy(s->recv_bb);
		s->recv_bb = NULL;
		return 0;
	}
	grpc_slice_unref(s->raw);
	s->raw = grpc_empty_slice();
	rc = bb_flatten(s->recv_bb, &s->raw) ? -EBADMSG : 1;
	grpc_byte_buffer_destroy(s->recv_bb);
	s->recv_bb = NULL;
	return rc;
}

static int recv_until(struct rc_stream *s, struct rc_ack *out, gpr_timespec deadline)
{
	int rc = recv_raw(s, deadline);

	if (rc == 0 || rc == -ETIMEDOUT)
		return rc;
	if (s->ack)
		aeroarc__agent__v1__telemetry_ack__free_unpacked(s->ack, NULL);
	s->ack = NULL;
	if (rc == 1)
		s->ack = aeroarc__agent__v1__telemetry_ack__unpack(NULL, GRPC_SLICE_LENGTH(s->raw),
								   GRPC_SLICE_START_PTR(s->raw));
	if (!s->ack)
		return -EBADMSG;
	out->seq = s->ack->seq;
	out->status = (int)s->ack->status;
	out->frame_id = s->ack->frame_id;
	out->error = s->ack->error;
	return 1;
}

int rc_stream_recv_ack(struct rc_stream *s, struct rc_ack *out, int timeout_ms)
{
	return recv_until(s, out, deadline_in(timeout_ms));
}

const char *rc_relay_arm_name(int arm)
{
	static const char *const names[] = { "none",
					     "telemetry_ack",
					     "set_operation_context",
					     "clear_operation_context",
					     "aircraft_command",
					     "deploy_mission",
					     "durable_command",
					     "flight_completion_receipt" };

	if (arm < 0 || arm > 7)
		return "unknown";
	return names[arm];
}

int rc_stream_recv_raw(struct rc_stream *s, const uint8_t **msg, size_t *len, int timeout_ms)
{
	int rc = recv_raw(s, deadline_in(timeout_ms));

	if (rc == 1) {
		*msg = GRPC_SLICE_START_PTR(s->raw);
		*len = GRPC_SLICE_LENGTH(s->raw);
	}
	return rc;
}

int rc_stream_recv_gen2(struct rc_stream *s, struct rc_relay_msg *out, int timeout_ms)
{
	int rc = recv_raw(s, deadline_in(timeout_ms));
	Aeroarc__Agent__V1__RelayStreamMessage *m;

	if (rc == 0 || rc == -ETIMEDOUT)
		return rc;
	memset(out, 0, sizeof *out);
	out->ack.frame_id = "";
	out->ack.error = "";
	if (s->relay_msg)
		aeroarc__agent__v1__relay_stream_message__free_unpacked(s->relay_msg, NULL);
	s->relay_msg = NULL;
	out->raw = GRPC_SLICE_START_PTR(s->raw);
	out->raw_len = GRPC_SLICE_LENGTH(s->raw);
	if (rc != 1)
		return rc;
	m = aeroarc__agent__v1__relay_stream_message__unpack(NULL, out->raw_len, out->raw);
	if (!m)
		return -EBADMSG;
	s->relay_msg = m;
	out->msg = m;
	out->arm = (int)m->payload_case;
	if (m->payload_case == AEROARC__AGENT__V1__RELAY_STREAM_MESSAGE__PAYLOAD_TELEMETRY_ACK &&
	    m->telemetry_ack) {
		out->ack.seq = m->telemetry_ack->seq;
		out->ack.status = (int)m->telemetry_ack->status;
		out->ack.frame_id = m->telemetry_ack->frame_id;
		out->ack.error = m->telemetry_ack->error;
	}
	return 1;
}

static size_t varint_put(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

int rc_envelope_wrap(int arm, const uint8_t *payload, size_t len, uint8_t **out,
		     size_t *out_len)
{
	uint8_t head[20];
	size_t n;

	*out = NULL;
	*out_len = 0;
	if (arm < 1 || arm > (1 << 29) - 1)
		return -EINVAL;
	n = varint_put(head, (uint64_t)arm << 3 | 2);
	n += varint_put(head + n, len);
	if (!(*out = malloc(n + len)))
		return -ENOMEM;
	memcpy(*out, head, n);
	if (len)
		memcpy(*out + n, payload, len);
	*out_len = n + len;
	return 0;
}

int rc_envelope_encode_frame(const struct rc_frame *f, uint8_t **out, size_t *len)
{
	uint8_t *frame;
	size_t flen;
	int rc;

	*out = NULL;
	*len = 0;
	if ((rc = rc_frame_encode(f, &frame, &flen)))
		return rc;
	rc = rc_envelope_wrap(RC_AGENT_TELEMETRY_FRAME, frame, flen, out, len);
	free(frame);
	return rc;
}

int rc_stream_send_gen2_arm(struct rc_stream *s, int arm, const uint8_t *payload, size_t len,
			    int timeout_ms)
{
	uint8_t *buf;
	size_t n;
	int rc;

	if ((rc = rc_envelope_wrap(arm, payload, len, &buf, &n)))
		return rc;
	rc = rc_stream_send(s, buf, n, timeout_ms);
	free(buf);
	return rc;
}

int rc_stream_send_gen2_frame(struct rc_stream *s, const struct rc_frame *f, int timeout_ms)
{
	uint8_t *buf;
	size_t n;
	int rc;

	if ((rc = rc_envelope_encode_frame(f, &buf, &n)))
		return rc;
	rc = rc_stream_send(s, buf, n, timeout_ms);
	free(buf);
	return rc;
}

int rc_stream_send_gen2_msg(struct rc_stream *s, int arm, const ProtobufCMessage *msg,
			    int timeout_ms)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = malloc(len ? len : 1);
	int rc;

	if (!buf)
		return -ENOMEM;
	protobuf_c_message_pack(msg, buf);
	rc = rc_stream_send_gen2_arm(s, arm, buf, len, timeout_ms);
	free(buf);
	return rc;
}

int rc_uuid_v4(char out[37])
{
	uint8_t b[16];
	size_t got = 0;

	while (got < sizeof b) {
		ssize_t n = getrandom(b + got, sizeof b - got, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
		 b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
		 b[14], b[15]);
	return 0;
}

int rc_stream_finish(struct rc_stream *s, struct rc_status *st, int timeout_ms)
{
	gpr_timespec deadline = deadline_in(timeout_ms);
	bool cancelled = false, ok;
	struct rc_ack ack;
	int rc;

	if (close_send_until(s, deadline) == -ETIMEDOUT) {
		grpc_call_cancel(s->call, NULL);
		cancelled = true;
		deadline = gpr_inf_future(GPR_CLOCK_MONOTONIC);
		send_wait(s, deadline);
	}
	while ((rc = recv_until(s, &ack, deadline)) != 0) {
		if (rc == -ETIMEDOUT) {
			grpc_call_cancel(s->call, NULL);
			cancelled = true;
			deadline = gpr_inf_future(GPR_CLOCK_MONOTONIC);
		}
	}
	if (s->status_pending && !cq_wait(s->cq, &s->status_tag, deadline, &ok)) {
		grpc_call_cancel(s->call, NULL);
		cancelled = true;
		deadline = gpr_inf_future(GPR_CLOCK_MONOTONIC);
		cq_wait(s->cq, &s->status_tag, deadline, &ok);
	}
	s->status_pending = false;
	s->status_done = true;
	send_wait(s, gpr_inf_future(GPR_CLOCK_MONOTONIC));
	status_from_grpc(st, s->code, s->details);
	return cancelled ? -ETIMEDOUT : 0;
}

void rc_stream_cancel(struct rc_stream *s)
{
	if (s && s->call)
		grpc_call_cancel(s->call, NULL);
}

void rc_stream_free(struct rc_stream *s)
{
	gpr_timespec never = gpr_inf_future(GPR_CLOCK_MONOTONIC);
	bool ok;

	if (!s)
		return;
	if (s->call) {
		/* Every batch must complete before the call goes: cancel makes
		 * them complete at once. */
		if (s->send_pending || s->recv_pending || s->status_pending)
			grpc_call_cancel(s->call, NULL);
		send_wait(s, never);
		if (s->recv_pending)
			cq_wait(s->cq, &s->recv_tag, never, &ok);
		if (s->status_pending)
			cq_wait(s->cq, &s->status_tag, never, &ok);
		grpc_call_unref(s->call);
	}
	cq_destroy(s->cq);
	if (s->recv_bb)
		grpc_byte_buffer_destroy(s->recv_bb);
	if (s->ack)
		aeroarc__agent__v1__telemetry_ack__free_unpacked(s->ack, NULL);
	if (s->relay_msg)
		aeroarc__agent__v1__relay_stream_message__free_unpacked(s->relay_msg, NULL);
	grpc_slice_unref(s->raw);
	grpc_metadata_array_destroy(&s->recv_md);
	grpc_metadata_array_destroy(&s->trail_md);
	grpc_slice_unref(s->details);
	md_free(&s->md);
	free(s);
}

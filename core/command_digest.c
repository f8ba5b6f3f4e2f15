/*
 * command_digest.c - SPEC.md 12.3: validate a DurableCommand or a
 * MissionPlan, then its canonical-v1 SHA-256 digest; and the per-item rules
 * of 14.3 rule 4 that DeployMission shares. One encoder per layout writes
 * into a sink that counts, copies or hashes, so the canonical bytes a test
 * sees are exactly the bytes that are hashed. Any thread; no state.
 */
#include "command_digest.h"

#include <float.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The altitude round trip must be binary32 arithmetic rounded at each step,
 * as upstream's Go float32 code is; evaluating it in wider precision (x87)
 * would change which altitudes pass. */
#if FLT_EVAL_METHOD != 0
#error "command_digest.c needs FLT_EVAL_METHOD 0: the altitude round trip is binary32"
#endif

typedef Aeroarc__Agent__V1__DurableCommand DurableCommand;
typedef Aeroarc__Agent__V1__OperationContext OperationContext;
typedef Aeroarc__Agent__V1__MavlinkExecution MavlinkExecution;
typedef Aeroarc__Agent__V1__DeployMissionCommand DeployMissionCommand;
typedef Aeroarc__Agent__V1__MissionBinding MissionBinding;
typedef Aeroarc__Agent__V1__MissionPlan MissionPlan;
typedef Aeroarc__Agent__V1__MissionItem MissionItem;

#define ARM_MAVLINK AEROARC__AGENT__V1__DURABLE_COMMAND__EXECUTION_MAVLINK
#define ARM_MISSION AEROARC__AGENT__V1__DURABLE_COMMAND__EXECUTION_MISSION

#define POLICY_MAVLINK "no_repeat_effect_v1"
#define POLICY_MISSION "mission_readback_v1"
#define CAPABILITY_MAVLINK "mavlink_command_v1"
#define CAPABILITY_MISSION "mission_upload_v1"
#define MAX_WINDOW_MS 300000
#define MAX_PLAN_ITEMS 200

/* Both prefixes are hashed with their terminating NUL (19 and 24 bytes). */
static const char COMMAND_PREFIX[] = "aeroarc-command-v1";
static const char PLAN_PREFIX[] = "aeroarc-mission-plan-v1";

static const char NO_MEMORY[] = "out of memory while computing the digest";

/* What an absent sub-message encodes as: its zero value (canonical bytes
 * are defined without validation, 12.3 fills the unused arm with zeros). */
static const OperationContext ZERO_CONTEXT = AEROARC__AGENT__V1__OPERATION_CONTEXT__INIT;
static const MavlinkExecution ZERO_MAVLINK = AEROARC__AGENT__V1__MAVLINK_EXECUTION__INIT;
static const MissionBinding ZERO_BINDING = AEROARC__AGENT__V1__MISSION_BINDING__INIT;
static const MissionItem ZERO_ITEM = AEROARC__AGENT__V1__MISSION_ITEM__INIT;

/* ---- small predicates ---------------------------------------------------- */

static bool empty(const char *s)
{
    return !s || !*s;
}

/* Byte-exact equality; protobuf-c strings are NUL-terminated and the relay
 * refused embedded NULs before this runs. */
static bool same(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool unknown_fields(const void *msg)
{
    const ProtobufCMessage *m = msg;
    return m && m->n_unknown_fields != 0;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

static uint64_t f64_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

/* "+0.0 (all bits zero)": -0.0 compares equal to 0 but is refused. */
static bool positive_zero(double d)
{
    return f64_bits(d) == 0;
}

static bool finite_not_negative_zero(float f)
{
    return isfinite(f) && f32_bits(f) != 0x80000000u;
}

static const MavlinkExecution *mavlink_arm(const DurableCommand *c)
{
    return c->execution_case == ARM_MAVLINK ? c->mavlink : NULL;
}

static const DeployMissionCommand *mission_arm(const DurableCommand *c)
{
    return c->execution_case == ARM_MISSION ? c->mission : NULL;
}

/* ---- UTF-8 ------------------------------------------------------------------ */

/* Length of the RFC 3629 sequence at s (left > 0 bytes remain), 0 if it is
 * not one. Decodes the code point, then refuses what RFC 3629 forbids:
 * overlong forms (below the length's minimum), surrogates, > U+10FFFF. */
static size_t utf8_sequence(const unsigned char *s, size_t left)
{
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t n = s[0] < 0x80 ? 1 : s[0] < 0xc0 ? 0 : s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3
             : s[0] < 0xf8 ? 4 : 0;
    uint32_t cp;

    if (n <= 1)
        return n;
    if (n > left)
        return 0;
    cp = s[0] & (0x7fu >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if (cp < least[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

bool command_digest_utf8(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;

    for (size_t i = 0; i < len;) {
        size_t n = utf8_sequence(u + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

static bool utf8_string(const char *s)
{
    return !s || command_digest_utf8(s, strlen(s));
}

/* ---- the sink: count, copy or hash ---------------------------------------- */

/* buf and md both NULL: only count. buf: copy (sized by a counting pass).
 * md: hash. len counts in every mode. */
struct sink {
    uint8_t *buf;
    EVP_MD_CTX *md;
    size_t len;
    bool failed; /* EVP_DigestUpdate failed */
};

static void put(struct sink *s, const void *p, size_t n)
{
    if (s->md) {
        if (EVP_DigestUpdate(s->md, p, n) != 1)
            s->failed = true;
    } else if (s->buf && n) {
        memcpy(s->buf + s->len, p, n);
    }
    s->len += n;
}

static void put_u32(struct sink *s, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(s, b, sizeof(b));
}

static void put_u64(struct sink *s, uint64_t v)
{
    put_u32(s, (uint32_t)(v >> 32));
    put_u32(s, (uint32_t)v);
}

/* Signed values in two's complement (the conversion to unsigned is exactly
 * that, by C's modular rule). */
static void put_i32(struct sink *s, int32_t v)
{
    put_u32(s, (uint32_t)v);
}

static void put_i64(struct sink *s, int64_t v)
{
    put_u64(s, (uint64_t)v);
}

static void put_bool(struct sink *s, bool v)
{
    uint8_t b = v ? 1 : 0;
    put(s, &b, 1);
}

/* STR: U32 byte length, then the bytes as received (no normalization). A
 * string fits in 32 bits: it came in a gRPC message. */
static void put_str(struct sink *s, const char *str)
{
    size_t n = str ? strlen(str) : 0;
    put_u32(s, (uint32_t)n);
    put(s, str, n);
}

/* ---- canonical layouts (12.3 "Encoding" and "Plan digest") ------------------ */

/* 58 bytes. */
static void encode_item(struct sink *s, const MissionItem *it)
{
    if (!it)
        it = &ZERO_ITEM;
    put_u32(s, it->sequence);
    put_u32(s, it->frame);
    put_u32(s, it->command);
    put_bool(s, it->current);
    put_bool(s, it->autocontinue);
    put_u64(s, f64_bits(it->param1));
    put_u64(s, f64_bits(it->param2));
    put_u64(s, f64_bits(it->param3));
    put_u64(s, f64_bits(it->param4));
    put_i32(s, it->latitude_e7);
    put_i32(s, it->longitude_e7);
    put_u32(s, f32_bits(it->altitude_m));
}

static void encode_plan(struct sink *s, const MissionPlan *p)
{
    size_t n = p ? p->n_items : 0;

    put(s, PLAN_PREFIX, sizeof(PLAN_PREFIX));
    put_u32(s, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        encode_item(s, p->items[i]);
}

/* Items 13-22: the MAVLink arm, or zeros and empty strings for any other. */
static void encode_mavlink(struct sink *s, const MavlinkExecution *m)
{
    if (!m)
        m = &ZERO_MAVLINK;
    put_u32(s, m->command);
    put_u32(s, (uint32_t)m->n_parameters);
    for (size_t i = 0; i < m->n_parameters; i++)
        put_u32(s, f32_bits(m->parameters[i]));
    put_bool(s, m->use_command_int);
    put_u32(s, m->frame);
    put_i32(s, m->x);
    put_i32(s, m->y);
    put_u32(s, f32_bits(m->z));
    put_str(s, m->vehicle_profile);
    put_str(s, m->observation);
    put_u32(s, m->expected_custom_mode);
}

/* Items 23-27: which mission the command is bound to. */
struct mission_ref {
    const char *digest, *mission_id, *deployment_id, *command_id;
    uint32_t version;
};

/* Arm 13: the precondition (pre_hex = its plan digest, "" without one);
 * arm 14: the binding; no arm: all empty. */
static struct mission_ref mission_ref_of(const DurableCommand *c, const char *pre_hex)
{
    const MavlinkExecution *m = mavlink_arm(c);
    const DeployMissionCommand *d = mission_arm(c);
    const MissionBinding *b = d && d->binding ? d->binding : &ZERO_BINDING;

    if (m)
        return (struct mission_ref){pre_hex, m->mission_precondition_id, "", "",
                                    m->mission_precondition_version};
    if (d)
        return (struct mission_ref){b->mission_digest, b->mission_id, b->deployment_id,
                                    d->command_id, b->mission_version};
    return (struct mission_ref){"", "", "", "", 0};
}

static void encode_command(struct sink *s, const DurableCommand *c, const char *pre_hex)
{
    const OperationContext *x = c->context ? c->context : &ZERO_CONTEXT;
    struct mission_ref r = mission_ref_of(c, pre_hex);

    put(s, COMMAND_PREFIX, sizeof(COMMAND_PREFIX));
    put_str(s, c->operator_id);
    put_str(s, c->aircraft_id);
    put_str(s, c->agent_id);
    put_str(s, x->flight_id);
    put_str(s, x->intent_id);
    put_u32(s, x->intent_version);
    put_str(s, c->definition);
    put_u32(s, c->definition_version);
    put_str(s, c->capability);
    put_i64(s, c->issued_at_unix_ms);
    put_i64(s, c->expires_at_unix_ms);
    put_str(s, c->recovery_policy);
    encode_mavlink(s, mavlink_arm(c));
    put_str(s, r.digest);
    put_str(s, r.mission_id);
    put_str(s, r.deployment_id);
    put_str(s, r.command_id);
    put_u32(s, r.version);
}

/* ---- hashing ---------------------------------------------------------------- */

static void hex_encode(const uint8_t *d, size_t n, char *hex)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    hex[2 * n] = '\0';
}

/* -1 only when libcrypto cannot allocate its context. */
static int hash_begin(struct sink *s)
{
    *s = (struct sink){.md = EVP_MD_CTX_new()};
    if (!s->md)
        return -1;
    if (EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(s->md);
        return -1;
    }
    return 0;
}

static int hash_end(struct sink *s, char hex[65])
{
    uint8_t d[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    bool ok = !s->failed && EVP_DigestFinal_ex(s->md, d, &n) == 1 && n == 32;

    EVP_MD_CTX_free(s->md);
    if (!ok)
        return -1;
    hex_encode(d, n, hex);
    return 0;
}

static int plan_hex(const MissionPlan *p, char hex[65])
{
    struct sink s;

    if (hash_begin(&s) < 0)
        return -1;
    encode_plan(&s, p);
    return hash_end(&s, hex);
}

/* Item 23 of arm 13: the precondition's plan digest, "" without one. */
static int precondition_hex(const DurableCommand *c, char hex[65])
{
    const MavlinkExecution *m = mavlink_arm(c);

    hex[0] = '\0';
    return m && m->mission_precondition ? plan_hex(m->mission_precondition, hex) : 0;
}

static int command_hex(const DurableCommand *c, char hex[65])
{
    char pre[COMMAND_DIGEST_HEX_LEN + 1];
    struct sink s;

    if (precondition_hex(c, pre) < 0 || hash_begin(&s) < 0)
        return -1;
    encode_command(&s, c, pre);
    return hash_end(&s, hex);
}

/* After a counting pass: a buffer of the counted size, ready for the copy
 * pass. NULL on OOM. */
static uint8_t *sink_alloc(struct sink *s)
{
    s->buf = malloc(s->len ? s->len : 1);
    s->len = 0;
    return s->buf;
}

uint8_t *command_digest_plan_canonical(const MissionPlan *p, size_t *len)
{
    struct sink s = {0};

    encode_plan(&s, p);
    if (!sink_alloc(&s))
        return NULL;
    encode_plan(&s, p);
    *len = s.len;
    return s.buf;
}

uint8_t *command_digest_canonical(const DurableCommand *c, size_t *len)
{
    char pre[COMMAND_DIGEST_HEX_LEN + 1];
    struct sink s = {0};

    if (precondition_hex(c, pre) < 0)
        return NULL;
    encode_command(&s, c, pre);
    if (!sink_alloc(&s))
        return NULL;
    encode_command(&s, c, pre);
    *len = s.len;
    return s.buf;
}

/* ---- mission items (14.3 rule 4, shared with 12.3) -------------------------- */

enum item_rule {
    ITEM_OK,
    ITEM_UNKNOWN,
    ITEM_SEQUENCE,
    ITEM_CURRENT,
    ITEM_AUTOCONTINUE,
    ITEM_PARAMS,
    ITEM_FRAME,
    ITEM_COMMAND,
    ITEM_PARAM4_ZERO,
    ITEM_PARAM4_LAND,
    ITEM_COORDINATES,
    ITEM_FINITE,
    ITEM_ALTITUDE_RANGE,
    ITEM_ALTITUDE_ROUND_TRIP,
};

/* Per rule: 14.3's text (first argument the item index, %d; the second,
 * %u, the frame or the command where the text names one) and a static
 * reason for 12.3's callers. */
static const struct {
    const char *text;
    const char *why;
} ITEM_RULES[] = {
    [ITEM_UNKNOWN] = {"mission item %d is nil or contains unknown fields",
                      "a mission item is absent or has unknown fields"},
    [ITEM_SEQUENCE] = {"mission item %d has non-contiguous sequence",
                       "a mission item's sequence is not its index"},
    [ITEM_CURRENT] = {"mission item %d sets reserved current flag", "a mission item sets current"},
    [ITEM_AUTOCONTINUE] = {"mission item %d must enable autocontinue",
                           "a mission item lacks autocontinue"},
    [ITEM_PARAMS] = {"mission item %d params 1 through 3 must be positive zero",
                     "a mission item's param1-3 are not +0.0"},
    [ITEM_FRAME] = {"mission item %d uses unsupported frame %u", "a mission item's frame is not 0"},
    [ITEM_COMMAND] = {"mission item %d uses unsupported command %u",
                      "a mission item's command is not 16, 21, 22 or a final RTL 20 at 0,0,0"},
    [ITEM_PARAM4_ZERO] = {"mission item %d param4 must be positive zero for command %u",
                          "a mission item's param4 is not +0.0"},
    [ITEM_PARAM4_LAND] = {"mission item %d param4 must be +1 for NAV_LAND",
                          "a NAV_LAND item's param4 is not 1.0"},
    [ITEM_COORDINATES] = {"mission item %d has invalid coordinates",
                          "a mission item's latitude or longitude is out of range"},
    [ITEM_FINITE] = {"mission item %d contains a non-finite value",
                     "a mission item has a non-finite value"},
    [ITEM_ALTITUDE_RANGE] = {"mission item %d altitude exceeds ArduPilot signed-centimeter storage",
                             "a mission item's altitude in centimeters is out of range"},
    [ITEM_ALTITUDE_ROUND_TRIP] =
        {"mission item %d altitude must round-trip through ArduPilot truncating "
         "signed-centimeter storage",
         "a mission item's altitude does not round-trip through signed centimeters"},
};

/* 16, 21, 22; and ours (14.3, after rule 5): RTL 20 only as the last item,
 * at lat = lon = 0 with param4 +0. The altitude is compared numerically
 * (14.6 item 6): -0.0 passes here and fails the round trip instead. */
static bool command_allowed(const MissionItem *it, bool last)
{
    switch (it->command) {
    case 16:
    case 21:
    case 22:
        return true;
    case 20:
        return last && it->latitude_e7 == 0 && it->longitude_e7 == 0 && it->altitude_m == 0.0f &&
               positive_zero(it->param4);
    default:
        return false;
    }
}

static bool item_finite(const MissionItem *it)
{
    const double v[] = {it->param1, it->param2, it->param3, it->param4, it->altitude_m};

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        if (!isfinite(v[i]))
            return false;
    }
    return true;
}

/*
 * ArduPilot stores altitude as truncated signed centimeters: p = alt x 100
 * in binary32, n = (int32)p, and n x 0.01f must give alt back bit for bit
 * (so -0.0 fails: it comes back +0.0). The range is compared as exact
 * values: both bounds are representable in binary32, so p = 2^31 is refused
 * (12.7 item 7) instead of overflowing the conversion.
 */
static enum item_rule altitude_rule(float alt, bool deploy_range)
{
    float p = alt * 100.0f;
    bool in_range = deploy_range ? p >= -8388608.0f && p <= 8388607.0f
                                 : p >= -2147483648.0f && p < 2147483648.0f;
    float back;

    if (!in_range)
        return ITEM_ALTITUDE_RANGE;
    back = (float)(int32_t)p * 0.01f;
    return f32_bits(back) == f32_bits(alt) ? ITEM_OK : ITEM_ALTITUDE_ROUND_TRIP;
}

/* The first rule item i of n breaks, in 14.3 rule 4's order. */
static enum item_rule item_rule_broken(const MissionItem *it, size_t i, size_t n,
                                       bool deploy_range)
{
    if (!it || unknown_fields(it))
        return ITEM_UNKNOWN;
    if (it->sequence != i)
        return ITEM_SEQUENCE;
    if (it->current)
        return ITEM_CURRENT;
    if (!it->autocontinue)
        return ITEM_AUTOCONTINUE;
    if (!positive_zero(it->param1) || !positive_zero(it->param2) || !positive_zero(it->param3))
        return ITEM_PARAMS;
    if (it->frame != 0)
        return ITEM_FRAME;
    if (!command_allowed(it, i + 1 == n))
        return ITEM_COMMAND;
    if ((it->command == 16 || it->command == 22) && !positive_zero(it->param4))
        return ITEM_PARAM4_ZERO;
    if (it->command == 21 && it->param4 != 1.0)
        return ITEM_PARAM4_LAND;
    if (it->latitude_e7 < -900000000 || it->latitude_e7 > 900000000 ||
        it->longitude_e7 < -1800000000 || it->longitude_e7 > 1800000000)
        return ITEM_COORDINATES;
    if (!item_finite(it))
        return ITEM_FINITE;
    return altitude_rule(it->altitude_m, deploy_range);
}

/* The first broken rule over the plan's items, and where (*at). */
static enum item_rule first_item_fault(const MissionPlan *p, bool deploy_range, size_t *at)
{
    size_t n = p ? p->n_items : 0;

    for (size_t i = 0; i < n; i++) {
        enum item_rule r = item_rule_broken(p->items[i], i, n, deploy_range);
        if (r != ITEM_OK) {
            *at = i;
            return r;
        }
    }
    return ITEM_OK;
}

int command_digest_plan_items(const MissionPlan *p, bool deploy_range, char *text, size_t cap)
{
    size_t at = 0;
    enum item_rule r = first_item_fault(p, deploy_range, &at);
    const MissionItem *it;

    if (r == ITEM_OK)
        return 0;
    it = p->items[at];
    if (text && cap) {
        /* Extra arguments are ignored by the texts that name no value. */
        unsigned value = !it ? 0 : r == ITEM_FRAME ? it->frame : it->command;
        snprintf(text, cap, ITEM_RULES[r].text, (int)at, value);
    }
    return -1;
}

/* ---- 12.3 validation -------------------------------------------------------- */

/* The plan rules of 12.3, with the int32 altitude range; NULL when they
 * hold, else the broken rule. */
static const char *plan_rules(const MissionPlan *p)
{
    size_t at;
    enum item_rule r;

    if (!p)
        return "mission plan is absent";
    if (unknown_fields(p))
        return "MissionPlan has unknown fields";
    if (p->schema_version != 1)
        return "mission plan schema_version is not 1";
    if (p->n_items < 1 || p->n_items > MAX_PLAN_ITEMS)
        return "mission plan does not have 1 to 200 items";
    r = first_item_fault(p, false, &at);
    return r == ITEM_OK ? NULL : ITEM_RULES[r].why;
}

/*
 * Unknown field numbers in the messages 12.3 lists (plans and items are
 * checked with the plan rules). A known number with the wrong wire type
 * never gets here: protobuf-c's unpack fails on it (a repeated scalar packed
 * or not is not a wrong type), and the caller refuses the undecodable
 * request as invalid too (12.8).
 */
static const char *check_unknown_fields(const DurableCommand *c)
{
    const DeployMissionCommand *d = mission_arm(c);

    if (unknown_fields(c))
        return "DurableCommand has unknown fields";
    if (unknown_fields(c->context))
        return "OperationContext has unknown fields";
    if (unknown_fields(mavlink_arm(c)))
        return "MavlinkExecution has unknown fields";
    if (unknown_fields(d))
        return "DeployMissionCommand has unknown fields";
    if (d && unknown_fields(d->binding))
        return "MissionBinding has unknown fields";
    return NULL;
}

/* Every string of the command, the undigested ones included: protobuf-c
 * does not check UTF-8, Go's parser upstream does. */
static const char *check_utf8(const DurableCommand *c)
{
    const OperationContext *x = c->context ? c->context : &ZERO_CONTEXT;
    const MavlinkExecution *m = mavlink_arm(c) ? c->mavlink : &ZERO_MAVLINK;
    const DeployMissionCommand *d = mission_arm(c);
    const MissionBinding *b = d && d->binding ? d->binding : &ZERO_BINDING;
    const char *strings[] = {
        c->command_id, c->command_digest, c->operator_id, c->aircraft_id, c->agent_id,
        c->definition, c->capability, c->recovery_policy, x->flight_id, x->intent_id,
        x->aircraft_id, m->observation, m->mission_precondition_id, m->vehicle_profile,
        d ? d->command_id : NULL, b->mission_id, b->mission_digest, b->deployment_id,
        b->operator_id, b->aircraft_id, b->flight_id, b->intent_id,
    };

    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
        if (!utf8_string(strings[i]))
            return "a string is not valid UTF-8";
    }
    return NULL;
}

static const char *check_identity(const DurableCommand *c)
{
    if (empty(c->operator_id))
        return "operator_id is empty";
    if (empty(c->aircraft_id))
        return "aircraft_id is empty";
    if (empty(c->agent_id))
        return "agent_id is empty";
    if (empty(c->definition))
        return "definition is empty";
    if (c->definition_version == 0)
        return "definition_version is 0";
    return NULL;
}

static const char *check_context(const DurableCommand *c)
{
    const OperationContext *x = c->context;

    if (!x)
        return "context is absent";
    if (!same(x->aircraft_id, c->aircraft_id))
        return "context.aircraft_id differs from aircraft_id";
    if (empty(x->flight_id))
        return "context.flight_id is empty";
    if (empty(x->intent_id))
        return "context.intent_id is empty";
    if (x->intent_version == 0)
        return "context.intent_version is 0";
    return NULL;
}

static const char *check_times(const DurableCommand *c)
{
    if (c->issued_at_unix_ms <= 0)
        return "issued_at_unix_ms is not positive";
    if (c->expires_at_unix_ms <= c->issued_at_unix_ms)
        return "expires_at_unix_ms is not after issued_at_unix_ms";
    /* Both positive here, so the difference cannot overflow where
     * issued + 300000 could. */
    if (c->expires_at_unix_ms - c->issued_at_unix_ms > MAX_WINDOW_MS)
        return "expires_at_unix_ms is more than 300000 ms after issued_at_unix_ms";
    return NULL;
}

/* A precondition passes the plan rules and is named; without one, no name. */
static const char *check_precondition(const MavlinkExecution *m)
{
    const char *why;

    if (!m->mission_precondition) {
        if (!empty(m->mission_precondition_id) || m->mission_precondition_version != 0)
            return "precondition id or version given without a precondition";
        return NULL;
    }
    if ((why = plan_rules(m->mission_precondition)))
        return why;
    if (empty(m->mission_precondition_id))
        return "precondition id is empty";
    if (m->mission_precondition_version == 0)
        return "precondition version is 0";
    return NULL;
}

/* Parameters, frame, x, y and z of arm 13. */
static const char *check_mavlink_values(const MavlinkExecution *m)
{
    if (m->n_parameters != 7)
        return "mavlink execution does not have exactly 7 parameters";
    if (m->frame > 255)
        return "mavlink frame exceeds 255";
    if (!m->use_command_int && (m->frame != 0 || m->x != 0 || m->y != 0 || m->z != 0.0f))
        return "frame, x, y and z are not 0 without use_command_int";
    if (m->use_command_int &&
        (m->parameters[4] != 0.0f || m->parameters[5] != 0.0f || m->parameters[6] != 0.0f))
        return "parameters 5 to 7 are not 0 with use_command_int";
    for (size_t i = 0; i < m->n_parameters; i++) {
        if (!finite_not_negative_zero(m->parameters[i]))
            return "a parameter is non-finite or -0.0";
    }
    if (!finite_not_negative_zero(m->z))
        return "z is non-finite or -0.0";
    return NULL;
}

/* Arm 13. */
static const char *check_mavlink(const DurableCommand *c, const MavlinkExecution *m)
{
    const char *why;

    if (!same(c->recovery_policy, POLICY_MAVLINK))
        return "arm 13 needs recovery_policy " POLICY_MAVLINK;
    if (!same(c->capability, CAPABILITY_MAVLINK))
        return "arm 13 needs capability " CAPABILITY_MAVLINK;
    if (m->command < 1 || m->command > 65535)
        return "mavlink command is not in 1..65535";
    if ((why = check_mavlink_values(m)))
        return why;
    return check_precondition(m);
}

/* Arm 14's binding against the command and its context (present here). */
static const char *check_binding(const DurableCommand *c, const DeployMissionCommand *d)
{
    const MissionBinding *b = d->binding;

    if (!b)
        return "mission binding is absent";
    if (empty(b->mission_id))
        return "binding mission_id is empty";
    if (empty(b->deployment_id))
        return "binding deployment_id is empty";
    if (b->mission_version == 0)
        return "binding mission_version is 0";
    if (empty(d->command_id))
        return "mission command_id is empty";
    if (!same(b->operator_id, c->operator_id) || !same(b->aircraft_id, c->aircraft_id))
        return "binding operator_id or aircraft_id differs from the command's";
    if (!same(b->flight_id, c->context->flight_id) || !same(b->intent_id, c->context->intent_id) ||
        b->intent_version != c->context->intent_version)
        return "binding flight_id, intent_id or intent_version differs from the context's";
    if (d->issued_at_unix_ms != c->issued_at_unix_ms ||
        d->expires_at_unix_ms != c->expires_at_unix_ms)
        return "mission issued or expires differs from the command's";
    return NULL;
}

/* Arm 14. */
static const char *check_mission(const DurableCommand *c, const DeployMissionCommand *d)
{
    char hex[COMMAND_DIGEST_HEX_LEN + 1];
    const char *why;

    if (!same(c->recovery_policy, POLICY_MISSION))
        return "arm 14 needs recovery_policy " POLICY_MISSION;
    if (!same(c->capability, CAPABILITY_MISSION))
        return "arm 14 needs capability " CAPABILITY_MISSION;
    if ((why = check_binding(c, d)) || (why = plan_rules(d->plan)))
        return why;
    if (plan_hex(d->plan, hex) < 0)
        return NO_MEMORY;
    if (!same(hex, d->binding->mission_digest))
        return "plan digest differs from binding.mission_digest";
    return NULL;
}

static const char *check_arm(const DurableCommand *c)
{
    if (!same(c->recovery_policy, POLICY_MAVLINK) && !same(c->recovery_policy, POLICY_MISSION))
        return "recovery_policy is not a known value";
    if (mavlink_arm(c))
        return check_mavlink(c, c->mavlink);
    if (mission_arm(c))
        return check_mission(c, c->mission);
    return "no execution arm is set";
}

/* 12.3's validation, in the SPEC's order; NULL when the command passes. */
static const char *validate(const DurableCommand *c)
{
    static const char *(*const rules[])(const DurableCommand *) = {
        check_unknown_fields, check_utf8, check_identity, check_context, check_times, check_arm,
    };

    if (!c)
        return "command is absent";
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        const char *why = rules[i](c);
        if (why)
            return why;
    }
    return NULL;
}

/* ---- entry points --------------------------------------------------------- */

/* failed: the broken rule (hex emptied, -1) or NULL (hex already filled, 0). */
static int verdict(const char *failed, char hex[65], const char **why)
{
    if (failed)
        hex[0] = '\0';
    if (why)
        *why = failed;
    return failed ? -1 : 0;
}

int command_digest_durable(const DurableCommand *c, char hex[65], const char **why)
{
    const char *failed = validate(c);

    if (!failed && command_hex(c, hex) < 0)
        failed = NO_MEMORY;
    return verdict(failed, hex, why);
}

int command_digest_plan(const MissionPlan *p, char hex[65], const char **why)
{
    const char *failed = plan_rules(p);

    if (!failed && plan_hex(p, hex) < 0)
        failed = NO_MEMORY;
    return verdict(failed, hex, why);
}

/* ---- 14.3: DeployMission validation ----------------------------------------- */

/* Bytes of the white-space character at s (left bytes), 0 if none. */
static size_t space_at(const unsigned char *s, size_t left)
{
    if (left >= 1 && (*s == ' ' || (*s >= '\t' && *s <= '\r')))
        return 1;
    if (left >= 2 && s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0))
        return 2;
    if (left < 3)
        return 0;
    uint32_t c = (uint32_t)(s[0] & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
    if ((s[0] & 0xf0) != 0xe0)
        return 0;
    bool sp = c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
              c == 0x202f || c == 0x205f || c == 0x3000;
    return sp ? 3 : 0;
}

/* The white space that ends s[0..len), its length in bytes. */
static size_t space_before(const unsigned char *s, size_t len)
{
    for (size_t k = 1; k <= 3 && k <= len; k++)
        if (space_at(s + len - k, k) == k)
            return k;
    return 0;
}

void command_digest_trim_space(const char *s, size_t len, size_t *start, size_t *n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t a = 0, b = len, k;

    while (a < b && (k = space_at(u + a, b - a)) > 0)
        a += k;
    while (b > a && (k = space_before(u + a, b - a)) > 0)
        b -= k;
    *start = a;
    *n = b - a;
}

static bool blank(const char *s)
{
    size_t start, n;

    command_digest_trim_space(s, strlen(s), &start, &n);
    return n == 0;
}

const char *command_digest_deploy_target(const MissionBinding *b, const char *operator_id,
                                         const char *aircraft_id)
{
    if (!operator_id || !aircraft_id || blank(operator_id) || blank(aircraft_id))
        return "relay Agent mapping is not configured";
    if (strcmp(operator_id, b->operator_id) != 0 || strcmp(aircraft_id, b->aircraft_id) != 0)
        return "mission binding does not match configured Agent mapping";
    return NULL;
}

/* "canonical" of 14.3: non-empty and unchanged by the trim. */
static bool canonical(const char *s)
{
    size_t len = s ? strlen(s) : 0, start, n;

    command_digest_trim_space(s, len, &start, &n);
    return len > 0 && n == len;
}

static bool lower_hex64(const char *s)
{
    size_t i = 0;

    for (; s && s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return i == COMMAND_DIGEST_HEX_LEN;
}

/* Rules 1-3 of 14.3: NULL, or the text (static; the schema version's is
 * formatted into text). */
static const char *deploy_shape(const DeployMissionCommand *d, char *text, size_t cap)
{
    const MissionBinding *b = d ? d->binding : NULL;
    const MissionPlan *p = d ? d->plan : NULL;

    if (!b || !p)
        return "command, binding, and plan are required";
    if (unknown_fields(d) || unknown_fields(b) || unknown_fields(p))
        return "mission command contains unknown fields";
    if (!canonical(d->command_id))
        return "command_id must be non-empty and canonical";
    if (!canonical(b->mission_id) || !canonical(b->mission_digest) ||
        !canonical(b->deployment_id) || !canonical(b->operator_id) ||
        !canonical(b->aircraft_id) || !canonical(b->flight_id) || !canonical(b->intent_id))
        return "all mission binding identifiers must be non-empty and canonical";
    if (b->mission_version == 0 || b->intent_version == 0)
        return "mission_version and intent_version must be positive";
    if (!lower_hex64(b->mission_digest))
        return "mission_digest must be lowercase hexadecimal SHA-256";
    if (d->issued_at_unix_ms <= 0 || d->expires_at_unix_ms <= d->issued_at_unix_ms)
        return "mission command timestamps are invalid";
    if (p->schema_version != 1) {
        snprintf(text, cap, "unsupported mission schema version %u", p->schema_version);
        return text;
    }
    if (p->n_items < 1 || p->n_items > MAX_PLAN_ITEMS)
        return "mission plan must contain 1 to 200 items";
    return NULL;
}

int command_digest_deploy_check(const DeployMissionCommand *d, char *text, size_t cap)
{
    const char *failed = deploy_shape(d, text, cap);
    char hex[65];

    if (failed) {
        if (failed != text)
            snprintf(text, cap, "%s", failed);
        return -1;
    }
    if (command_digest_plan_items(d->plan, true, text, cap) < 0)
        return -1;
    if (plan_hex(d->plan, hex) < 0) {
        snprintf(text, cap, "%s", NO_MEMORY);
        return -1;
    }
    if (strcmp(hex, d->binding->mission_digest) != 0) {
        snprintf(text, cap, "mission_digest does not match the canonical plan");
        return -1;
    }
    return 0;
}

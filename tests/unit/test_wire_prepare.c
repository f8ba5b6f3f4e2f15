/*
 * test_wire_prepare.c - core/wire_prepare.c: a message field sent as
 * several records reads as their merge, a known number with the wrong wire
 * type as an unknown field, every other field as it came; bytes that need
 * nothing are left alone; bytes that do not parse are refused.
 */
#include "wire_prepare.h"

#include "aeroarc/agent/v1/agent.pb-c.h"
#include "aeroarc/relay/v1/relay.pb-c.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

typedef Aeroarc__Agent__V1__DurableCommand DurableCommand;
typedef Aeroarc__Relay__V1__ExchangeCommandRequest Request;
#define REQUEST_DESC (&aeroarc__relay__v1__exchange_command_request__descriptor)

static size_t pack(const ProtobufCMessage *m, uint8_t *out)
{
    return protobuf_c_message_pack(m, out);
}

/* A length-delimited record of `field` holding n bytes of p. */
static size_t record(uint8_t *out, uint32_t field, const uint8_t *p, size_t n)
{
    cr_assert_lt(n, 128u * 128u);
    size_t o = 0;
    out[o++] = (uint8_t)(field << 3 | 2);
    if (n >= 128) {
        out[o++] = (uint8_t)(n & 0x7f) | 0x80;
        out[o++] = (uint8_t)(n >> 7);
    } else {
        out[o++] = (uint8_t)n;
    }
    memcpy(out + o, p, n);
    return o + n;
}

static Request *read_prepared(const uint8_t *in, size_t len)
{
    uint8_t *out = NULL;
    size_t out_len = 0;
    cr_assert_eq(wire_prepare(REQUEST_DESC, in, len, &out, &out_len), 1);
    
    Request *r = (Request *)protobuf_c_message_unpack(REQUEST_DESC, NULL, out_len, out);
    free(out);
    cr_assert_not_null(r);
    return r;
}

Test(wire_prepare, nothing_twice_is_left_alone)
{
    DurableCommand c = AEROARC__AGENT__V1__DURABLE_COMMAND__INIT;
    c.command_id = "cmd-1";
    c.definition_version = 1;
    Request q = AEROARC__RELAY__V1__EXCHANGE_COMMAND_REQUEST__INIT;
    q.agent_id = "agent";
    q.command = &c;
    q.attempt_id = "cmd-1/attempt-1";
    uint8_t b[256];
    size_t n = pack(&q.base, b);
    uint8_t *out = NULL;
    size_t out_len = 0;
    cr_assert_eq(wire_prepare(REQUEST_DESC, b, n, &out, &out_len), 0);
    cr_assert_null(out);
}

/* The command in two records: the second only repeats agent_id. Every
 * scalar of the first must survive (protobuf-c's own merge drops them). */
Test(wire_prepare, a_message_in_two_records_reads_as_their_merge)
{
    DurableCommand c = AEROARC__AGENT__V1__DURABLE_COMMAND__INIT;
    c.command_id = "cmd-1";
    c.agent_id = "agent";
    c.definition = "ARM";
    c.definition_version = 7;
    c.issued_at_unix_ms = 1700000000000;
    uint8_t cb[256], b[512], part[32];
    size_t cn = pack(&c.base, cb);
    DurableCommand tail = AEROARC__AGENT__V1__DURABLE_COMMAND__INIT;
    tail.agent_id = "agent-b";
    size_t tn = pack(&tail.base, part);
    size_t n = 0;
    n += record(b + n, 2, cb, cn);
    n += record(b + n, 3, (const uint8_t *)"a/1", 3); /* attempt_id between them */
    n += record(b + n, 2, part, tn);
    Request *r = read_prepared(b, n);
    cr_assert_str_eq(r->command->command_id, "cmd-1");
    cr_assert_str_eq(r->command->agent_id, "agent-b", "the last record's scalar wins");
    cr_assert_str_eq(r->command->definition, "ARM");
    cr_assert_eq(r->command->definition_version, 7);
    cr_assert_eq(r->command->issued_at_unix_ms, 1700000000000);
    cr_assert_str_eq(r->attempt_id, "a/1");
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* Inside the one command record, its context in two records: merged at
 * that depth too. */
Test(wire_prepare, nested_records_merge_too)
{
    Aeroarc__Agent__V1__OperationContext a = AEROARC__AGENT__V1__OPERATION_CONTEXT__INIT;
    a.flight_id = "flight";
    a.intent_version = 3;
    Aeroarc__Agent__V1__OperationContext z = AEROARC__AGENT__V1__OPERATION_CONTEXT__INIT;
    z.intent_id = "intent";
    uint8_t ab[128], zb[128], cb[512], b[600];
    size_t an = pack(&a.base, ab), zn = pack(&z.base, zb);
    size_t cn = 0;
    cn += record(cb + cn, 1, (const uint8_t *)"cmd-2", 5);
    cn += record(cb + cn, 6, ab, an);
    cn += record(cb + cn, 7, (const uint8_t *)"ARM", 3);
    cn += record(cb + cn, 6, zb, zn);
    size_t n = record(b, 2, cb, cn);
    Request *r = read_prepared(b, n);
    const Aeroarc__Agent__V1__OperationContext *ctx = r->command->context;
    cr_assert_not_null(ctx);
    cr_assert_str_eq(ctx->flight_id, "flight");
    cr_assert_str_eq(ctx->intent_id, "intent");
    cr_assert_eq(ctx->intent_version, 3);
    cr_assert_str_eq(r->command->definition, "ARM");
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* A oneof member's record clears the oneof (Go's protobuf): mavlink A,
 * mission B, mavlink C reads as C alone, not A merged with C (whose
 * repeated parameters would then be 14). Records of one member in a row
 * still merge; a member every record of which another one follows is gone. */
Test(wire_prepare, a_oneof_member_clears_the_others_before_it)
{
    float pa[7] = {1, 2, 3, 4, 5, 6, 7}, pc[7] = {7, 6, 5, 4, 3, 2, 1};
    Aeroarc__Agent__V1__MavlinkExecution a = AEROARC__AGENT__V1__MAVLINK_EXECUTION__INIT;
    a.command = 400;
    a.n_parameters = 7;
    a.parameters = pa;
    Aeroarc__Agent__V1__MavlinkExecution c = a;
    c.command = 20;
    c.parameters = pc;
    Aeroarc__Agent__V1__DeployMissionCommand m = AEROARC__AGENT__V1__DEPLOY_MISSION_COMMAND__INIT;
    m.command_id = "mission";
    uint8_t ab[128], cb[128], mb[64], d[512], b[600];
    size_t an = pack(&a.base, ab), cn = pack(&c.base, cb), mn = pack(&m.base, mb);
    size_t dn = 0;
    dn += record(d + dn, 1, (const uint8_t *)"cmd-3", 5);
    dn += record(d + dn, 13, ab, an);
    dn += record(d + dn, 14, mb, mn);
    dn += record(d + dn, 13, cb, cn);
    dn += record(d + dn, 13, (const uint8_t[]){0x08, 0x10}, 2); /* command 16, merged into C */
    size_t n = record(b, 2, d, dn);
    Request *r = read_prepared(b, n);
    const DurableCommand *got = r->command;
    cr_assert_eq(got->execution_case, AEROARC__AGENT__V1__DURABLE_COMMAND__EXECUTION_MAVLINK);
    cr_assert_eq(got->mavlink->n_parameters, 7, "A's parameters were kept");
    cr_assert_float_eq(got->mavlink->parameters[0], 7.0f, 0);
    cr_assert_eq(got->mavlink->command, 16);
    protobuf_c_message_free_unpacked(&r->base, NULL);

    /* mavlink A twice, then the mission: the mission alone. */
    dn = 0;
    dn += record(d + dn, 13, ab, an);
    dn += record(d + dn, 13, cb, cn);
    dn += record(d + dn, 14, mb, mn);
    n = record(b, 2, d, dn);
    r = read_prepared(b, n);
    cr_assert_eq(r->command->execution_case,
                 AEROARC__AGENT__V1__DURABLE_COMMAND__EXECUTION_MISSION);
    cr_assert_str_eq(r->command->mission->command_id, "mission");
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

Test(wire_prepare, bytes_that_do_not_parse_are_refused)
{
    static const uint8_t cut[] = {0x12, 0x10, 0x0a, 0x02}; /* a length past the end */
    uint8_t *out = NULL;
    size_t out_len = 0;
    cr_assert_eq(wire_prepare(REQUEST_DESC, cut, sizeof(cut), &out, &out_len), -1);
    cr_assert_null(out);
}

/* A known number with the wrong wire type is an unknown field of its own
 * message (Go's reading), not a refusal of the whole request: here
 * definition_version (field 8, a varint) sent as fixed32 inside the
 * command, and the command's context (field 6) as a varint. */
Test(wire_prepare, a_wrong_wire_type_is_an_unknown_field_where_it_is)
{
    uint8_t cb[64], b[128];
    size_t cn = 0;
    cn += record(cb + cn, 1, (const uint8_t *)"cmd-3", 5);
    cb[cn++] = 8 << 3 | 5; /* fixed32 */
    memcpy(cb + cn, "\x07\0\0\0", 4);
    cn += 4;
    cb[cn++] = 6 << 3 | 0; /* varint */
    cb[cn++] = 1;
    cn += record(cb + cn, 7, (const uint8_t *)"ARM", 3);
    size_t n = record(b, 2, cb, cn);
    cr_assert_null(protobuf_c_message_unpack(REQUEST_DESC, NULL, n, b),
                   "protobuf-c refuses these bytes as they are");
    Request *r = read_prepared(b, n);
    cr_assert_str_eq(r->command->command_id, "cmd-3");
    cr_assert_str_eq(r->command->definition, "ARM");
    cr_assert_eq(r->command->definition_version, 0);
    cr_assert_null(r->command->context);
    cr_assert_eq(r->command->base.n_unknown_fields, 2);
    cr_assert_eq(r->base.n_unknown_fields, 0);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* Packed is a fit for a repeated number; nothing to rewrite. */
Test(wire_prepare, packed_repeated_numbers_are_left_alone)
{
    Aeroarc__Agent__V1__MavlinkExecution mav = AEROARC__AGENT__V1__MAVLINK_EXECUTION__INIT;
    float params[3] = {1, 2, 3};
    mav.n_parameters = 3;
    mav.parameters = params;
    DurableCommand c = AEROARC__AGENT__V1__DURABLE_COMMAND__INIT;
    c.command_id = "cmd-4";
    c.execution_case = AEROARC__AGENT__V1__DURABLE_COMMAND__EXECUTION_MAVLINK;
    c.mavlink = &mav;
    Request q = AEROARC__RELAY__V1__EXCHANGE_COMMAND_REQUEST__INIT;
    q.command = &c;
    uint8_t b[256];
    size_t n = pack(&q.base, b);
    uint8_t *out = NULL;
    size_t out_len = 0;
    cr_assert_eq(wire_prepare(REQUEST_DESC, b, n, &out, &out_len), 0);
}

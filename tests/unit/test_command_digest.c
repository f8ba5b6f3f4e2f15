/*
 * test_command_digest.c - core/command_digest.c against SPEC.md 12.3 and
 * 14.3: the three digest vectors of 12.3 and the canonical bytes of the
 * first and of the golden plan byte for byte; every 12.3 validation rule
 * refusing on its own; the 14.3 item texts; unknown fields and invalid
 * UTF-8 as protobuf-c delivers them; `parameters` sent partly packed and
 * partly unpacked (12.7 item 6).
 */
#include "command_digest.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef Aeroarc__Agent__V1__DurableCommand DurableCommand;
typedef Aeroarc__Agent__V1__OperationContext OperationContext;
typedef Aeroarc__Agent__V1__MavlinkExecution MavlinkExecution;
typedef Aeroarc__Agent__V1__DeployMissionCommand DeployMissionCommand;
typedef Aeroarc__Agent__V1__MissionBinding MissionBinding;
typedef Aeroarc__Agent__V1__MissionPlan MissionPlan;
typedef Aeroarc__Agent__V1__MissionItem MissionItem;

/* ---- the SPEC's vectors ------------------------------------------------------ */

#define ARM_DIGEST "c99fff59b84a620116941115acd3e13737c306dec5a431dd4d25e60462d6f6bc"
#define PLAN_DIGEST "6efa96b36af29a800d53ee7d7baf57d4b24f00d9ce2b408327281e74824acf4f"
#define START_DIGEST "6a0ca454591344f338f5a25319927b077e80386ad38aaf61534efe396ed31f93"

/* 12.3 worked example, 251 bytes. */
static const char ARM_CANONICAL[] =
    "6165726f6172632d636f6d6d616e642d763100000000086f70657261746f7200"
    "0000086169726372616674000000056167656e7400000006666c696768740000"
    "0006696e74656e74000000010000000341524d00000001000000126d61766c69"
    "6e6b5f636f6d6d616e645f763100000000000000010000000000007531000000"
    "136e6f5f7265706561745f6566666563745f763100000190000000073f800000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000d61726475636f707465725f7631000000056172"
    "6d6564000000000000000000000000000000000000000000000000";

/* 14.3: the golden plan's canonical bytes, 86. */
static const char PLAN_CANONICAL[] =
    "6165726f6172632d6d697373696f6e2d706c616e2d7631000000000100000000"
    "0000000000000010000100000000000000000000000000000000000000000000"
    "00000000000000000000eaebfe9458e8cf1241a0cccd";

/* ---- one command under test, rebuilt by each builder -------------------------- */

#define MAX_ITEMS 201

static struct {
    DurableCommand cmd;
    OperationContext ctx;
    MavlinkExecution mav;
    float params[7];
    DeployMissionCommand dep;
    MissionBinding bind;
    MissionPlan plan;
    MissionItem item[MAX_ITEMS];
    MissionItem *items[MAX_ITEMS];
} f;

/* Item i of a plan: a waypoint (16) at the golden item's place. */
static void waypoint(size_t i)
{
    f.item[i] = (MissionItem)AEROARC__AGENT__V1__MISSION_ITEM__INIT;
    f.item[i].sequence = (uint32_t)i;
    f.item[i].command = 16;
    f.item[i].autocontinue = 1;
    f.item[i].latitude_e7 = -353632620;
    f.item[i].longitude_e7 = 1491652370;
    f.item[i].altitude_m = 20.1f;
    f.items[i] = &f.item[i];
}

/* n waypoints; n = 1 is 12.3's golden plan. */
static void plan_of(size_t n)
{
    f.plan = (MissionPlan)AEROARC__AGENT__V1__MISSION_PLAN__INIT;
    f.plan.schema_version = 1;
    for (size_t i = 0; i < n; i++)
        waypoint(i);
    f.plan.n_items = n;
    f.plan.items = f.items;
}

/* 12.3's worked example: ARM, command 400, no precondition. */
static void arm_vector(void)
{
    memset(&f, 0, sizeof(f));
    f.ctx = (OperationContext)AEROARC__AGENT__V1__OPERATION_CONTEXT__INIT;
    f.ctx.flight_id = "flight";
    f.ctx.intent_id = "intent";
    f.ctx.intent_version = 1;
    f.ctx.aircraft_id = "aircraft";
    f.params[0] = 1.0f;
    f.mav = (MavlinkExecution)AEROARC__AGENT__V1__MAVLINK_EXECUTION__INIT;
    f.mav.command = 400;
    f.mav.n_parameters = 7;
    f.mav.parameters = f.params;
    f.mav.observation = "armed";
    f.mav.vehicle_profile = "arducopter_v1";
    f.cmd = (DurableCommand)AEROARC__AGENT__V1__DURABLE_COMMAND__INIT;
    f.cmd.command_id = "cmd-1";
    f.cmd.command_digest = ARM_DIGEST;
    f.cmd.operator_id = "operator";
    f.cmd.aircraft_id = "aircraft";
    f.cmd.agent_id = "agent";
    f.cmd.context = &f.ctx;
    f.cmd.definition = "ARM";
    f.cmd.definition_version = 1;
    f.cmd.capability = "mavlink_command_v1";
    f.cmd.issued_at_unix_ms = 1;
    f.cmd.expires_at_unix_ms = 30001;
    f.cmd.recovery_policy = "no_repeat_effect_v1";
    f.cmd.execution_case = AEROARC__AGENT__V1__DURABLE_COMMAND__EXECUTION_MAVLINK;
    f.cmd.mavlink = &f.mav;
}

/* 12.3's second vector: MISSION_START with the golden plan as precondition. */
static void start_vector(void)
{
    arm_vector();
    plan_of(1);
    f.cmd.definition = "MISSION_START";
    f.mav.command = 300;
    f.params[0] = 0.0f;
    f.mav.observation = "mission_running";
    f.mav.mission_precondition = &f.plan;
    f.mav.mission_precondition_id = "mission";
    f.mav.mission_precondition_version = 1;
}

/* A valid arm 14 (no SPEC vector): the golden plan, bound to the command. */
static void upload_vector(void)
{
    arm_vector();
    plan_of(1);
    f.bind = (MissionBinding)AEROARC__AGENT__V1__MISSION_BINDING__INIT;
    f.bind.mission_id = "mission";
    f.bind.mission_version = 1;
    f.bind.mission_digest = PLAN_DIGEST;
    f.bind.deployment_id = "deployment";
    f.bind.operator_id = "operator";
    f.bind.aircraft_id = "aircraft";
    f.bind.flight_id = "flight";
    f.bind.intent_id = "intent";
    f.bind.intent_version = 1;
    f.dep = (DeployMissionCommand)AEROARC__AGENT__V1__DEPLOY_MISSION_COMMAND__INIT;
    f.dep.command_id = "upload-1";
    f.dep.binding = &f.bind;
    f.dep.plan = &f.plan;
    f.dep.issued_at_unix_ms = 1;
    f.dep.expires_at_unix_ms = 30001;
    f.cmd.definition = "MISSION_UPLOAD";
    f.cmd.capability = "mission_upload_v1";
    f.cmd.recovery_policy = "mission_readback_v1";
    f.cmd.execution_case = AEROARC__AGENT__V1__DURABLE_COMMAND__EXECUTION_MISSION;
    f.cmd.mission = &f.dep;
}

/* ---- helpers ---------------------------------------------------------------- */

static char *to_hex(const uint8_t *b, size_t n)
{
    char *s = malloc(2 * n + 1);
    for (size_t i = 0; i < n; i++)
        sprintf(s + 2 * i, "%02x", b[i]);
    s[2 * n] = '\0';
    return s;
}

static void expect_digest(const DurableCommand *c, const char *want)
{
    char hex[65];
    const char *why = "unset";
    cr_assert_eq(command_digest_durable(c, hex, &why), 0, "refused: %s", why);
    cr_assert_null(why);
    cr_assert_str_eq(hex, want);
}

static void expect_refused_by(const DurableCommand *c, const char *want)
{
    char hex[65] = "x";
    const char *why = NULL;
    cr_assert_eq(command_digest_durable(c, hex, &why), -1, "accepted; expected \"%s\"", want);
    cr_assert_str_eq(why, want);
    cr_assert_str_empty(hex);
}

static void expect_refused(const char *want)
{
    expect_refused_by(&f.cmd, want);
}

static void expect_plan_refused(const char *want)
{
    char hex[65];
    const char *why = NULL;
    cr_assert_eq(command_digest_plan(&f.plan, hex, &why), -1, "accepted; expected \"%s\"", want);
    cr_assert_str_eq(why, want);
}

/* The 14.3 text for the current plan, deploy range; "" when it passes. */
static const char *item_text(void)
{
    static char text[160];
    text[0] = '\0';
    if (command_digest_plan_items(&f.plan, true, text, sizeof(text)) == 0)
        cr_assert_str_empty(text);
    return text;
}

static float float_of_bits(uint32_t u)
{
    float v;
    memcpy(&v, &u, sizeof(v));
    return v;
}

/* msg packed, field 99 (varint 1, a number no listed message has) appended,
 * unpacked again: what protobuf-c gives the relay for such a message. Free
 * with protobuf_c_message_free_unpacked. */
static void *with_unknown_field(const void *msg)
{
    const ProtobufCMessage *m = msg;
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n + 3);
    ProtobufCMessage *out;

    protobuf_c_message_pack(m, buf);
    buf[n] = 0x98, buf[n + 1] = 0x06, buf[n + 2] = 0x01; /* tag 99 << 3 | 0, then 1 */
    out = protobuf_c_message_unpack(m->descriptor, NULL, n + 3, buf);
    free(buf);
    cr_assert_not_null(out);
    cr_assert_eq(out->n_unknown_fields, 1);
    return out;
}

/* ---- vectors ------------------------------------------------------------------ */

Test(command_digest, the_worked_example_gives_the_specs_bytes_and_digest)
{
    size_t len = 0;
    uint8_t *b;
    char *hex;

    arm_vector();
    b = command_digest_canonical(&f.cmd, &len);
    cr_assert_not_null(b);
    hex = to_hex(b, len);
    printf("canonical (%zu bytes): %s\n", len, hex);
    cr_assert_eq(len, 251);
    cr_assert_str_eq(hex, ARM_CANONICAL);
    free(hex);
    free(b);
    expect_digest(&f.cmd, ARM_DIGEST);
}

Test(command_digest, the_golden_plan_gives_the_specs_bytes_and_digest)
{
    size_t len = 0;
    uint8_t *b;
    char *hex;
    char digest[65];
    const char *why = "unset";

    plan_of(1);
    b = command_digest_plan_canonical(&f.plan, &len);
    cr_assert_not_null(b);
    hex = to_hex(b, len);
    cr_assert_eq(len, 86);
    cr_assert_str_eq(hex, PLAN_CANONICAL);
    free(hex);
    free(b);
    cr_assert_eq(command_digest_plan(&f.plan, digest, &why), 0, "refused: %s", why);
    cr_assert_str_eq(digest, PLAN_DIGEST);
}

Test(command_digest, mission_start_with_a_precondition_gives_the_second_vector)
{
    size_t len = 0;
    uint8_t *b;

    start_vector();
    b = command_digest_canonical(&f.cmd, &len);
    cr_assert_not_null(b);
    cr_assert_eq(len, 342);
    free(b);
    expect_digest(&f.cmd, START_DIGEST);
}

/* Arm 14: items 13-22 are zeros and empty strings (37 bytes), then the
 * binding's digest (its length 64 first), ids and version. */
Test(command_digest, a_mission_arm_digests_its_binding)
{
    static const uint8_t zeros_then_64[41] = {[40] = 64};
    size_t len = 0;
    uint8_t *b;
    const uint8_t *at;

    upload_vector();
    cr_assert_eq(command_digest_durable(&f.cmd, (char[65]){0}, NULL), 0);
    b = command_digest_canonical(&f.cmd, &len);
    cr_assert_not_null(b);
    at = memmem(b, len, "mission_readback_v1", 19);
    cr_assert_not_null(at);
    cr_assert_eq(memcmp(at + 19, zeros_then_64, sizeof(zeros_then_64)), 0);
    cr_assert_eq(memcmp(at + 19 + 41, PLAN_DIGEST, 64), 0);
    cr_assert_eq(memcmp(b + len - 4 - 8, "upload-1\0\0\0\1", 12), 0);
    free(b);
}

/* ---- 12.3 command rules: each refuses on its own -------------------------------- */

Test(command_digest, every_command_rule_refuses)
{
    arm_vector(), f.cmd.operator_id = "", expect_refused("operator_id is empty");
    arm_vector(), f.cmd.aircraft_id = "", expect_refused("aircraft_id is empty");
    arm_vector(), f.cmd.agent_id = "", expect_refused("agent_id is empty");
    arm_vector(), f.cmd.definition = "", expect_refused("definition is empty");
    arm_vector(), f.cmd.definition_version = 0, expect_refused("definition_version is 0");
    arm_vector(), f.cmd.context = NULL, expect_refused("context is absent");
    arm_vector(), f.ctx.aircraft_id = "aircraft ",
        expect_refused("context.aircraft_id differs from aircraft_id");
    arm_vector(), f.ctx.flight_id = "", expect_refused("context.flight_id is empty");
    arm_vector(), f.ctx.intent_id = "", expect_refused("context.intent_id is empty");
    arm_vector(), f.ctx.intent_version = 0, expect_refused("context.intent_version is 0");
    arm_vector(), f.cmd.issued_at_unix_ms = 0, f.cmd.expires_at_unix_ms = 1000,
        expect_refused("issued_at_unix_ms is not positive");
    arm_vector(), f.cmd.expires_at_unix_ms = 1,
        expect_refused("expires_at_unix_ms is not after issued_at_unix_ms");
    arm_vector(), f.cmd.expires_at_unix_ms = 300002,
        expect_refused("expires_at_unix_ms is more than 300000 ms after issued_at_unix_ms");
    arm_vector(), f.cmd.recovery_policy = "no_repeat_effect_v2",
        expect_refused("recovery_policy is not a known value");
    arm_vector(), f.cmd.execution_case = AEROARC__AGENT__V1__DURABLE_COMMAND__EXECUTION__NOT_SET,
        f.cmd.mavlink = NULL, expect_refused("no execution arm is set");
    expect_refused_by(NULL, "command is absent");
}

Test(command_digest, the_window_bounds_are_inclusive_and_overflow_free)
{
    char hex[65];

    arm_vector(), f.cmd.expires_at_unix_ms = 300001;
    cr_assert_eq(command_digest_durable(&f.cmd, hex, NULL), 0);
    arm_vector(), f.cmd.issued_at_unix_ms = INT64_MAX - 1, f.cmd.expires_at_unix_ms = INT64_MAX;
    cr_assert_eq(command_digest_durable(&f.cmd, hex, NULL), 0);
}

Test(command_digest, every_mavlink_rule_refuses)
{
    arm_vector(), f.cmd.recovery_policy = "mission_readback_v1",
        expect_refused("arm 13 needs recovery_policy no_repeat_effect_v1");
    arm_vector(), f.cmd.capability = "mission_upload_v1",
        expect_refused("arm 13 needs capability mavlink_command_v1");
    arm_vector(), f.mav.command = 0, expect_refused("mavlink command is not in 1..65535");
    arm_vector(), f.mav.command = 65536, expect_refused("mavlink command is not in 1..65535");
    arm_vector(), f.mav.n_parameters = 6,
        expect_refused("mavlink execution does not have exactly 7 parameters");
    arm_vector(), f.mav.use_command_int = 1, f.mav.frame = 256,
        expect_refused("mavlink frame exceeds 255");
    arm_vector(), f.mav.frame = 1, expect_refused("frame, x, y and z are not 0 without use_command_int");
    arm_vector(), f.mav.x = 1, expect_refused("frame, x, y and z are not 0 without use_command_int");
    arm_vector(), f.mav.y = -1, expect_refused("frame, x, y and z are not 0 without use_command_int");
    arm_vector(), f.mav.z = 0.5f, expect_refused("frame, x, y and z are not 0 without use_command_int");
    arm_vector(), f.mav.use_command_int = 1, f.params[6] = 1.0f,
        expect_refused("parameters 5 to 7 are not 0 with use_command_int");
    arm_vector(), f.params[3] = NAN, expect_refused("a parameter is non-finite or -0.0");
    arm_vector(), f.params[2] = INFINITY, expect_refused("a parameter is non-finite or -0.0");
    arm_vector(), f.params[1] = -0.0f, expect_refused("a parameter is non-finite or -0.0");
    arm_vector(), f.mav.z = -0.0f, expect_refused("z is non-finite or -0.0");
    arm_vector(), f.mav.use_command_int = 1, f.mav.z = INFINITY,
        expect_refused("z is non-finite or -0.0");
    arm_vector(), f.mav.mission_precondition_id = "mission",
        expect_refused("precondition id or version given without a precondition");
    arm_vector(), f.mav.mission_precondition_version = 1,
        expect_refused("precondition id or version given without a precondition");
    start_vector(), f.mav.mission_precondition_id = "", expect_refused("precondition id is empty");
    start_vector(), f.mav.mission_precondition_version = 0,
        expect_refused("precondition version is 0");
    start_vector(), f.plan.schema_version = 2,
        expect_refused("mission plan schema_version is not 1");
    start_vector(), f.item[0].altitude_m = -0.0f,
        expect_refused("a mission item's altitude does not round-trip through signed centimeters");
}

Test(command_digest, command_int_carries_frame_x_y_z)
{
    arm_vector();
    f.mav.use_command_int = 1, f.mav.frame = 6, f.mav.x = -353632620, f.mav.y = 1491652370;
    f.mav.z = 20.0f, f.params[4] = 0.0f;
    cr_assert_eq(command_digest_durable(&f.cmd, (char[65]){0}, NULL), 0);
}

Test(command_digest, every_mission_arm_rule_refuses)
{
    upload_vector(), f.cmd.recovery_policy = "no_repeat_effect_v1",
        expect_refused("arm 14 needs recovery_policy mission_readback_v1");
    upload_vector(), f.cmd.capability = "mavlink_command_v1",
        expect_refused("arm 14 needs capability mission_upload_v1");
    upload_vector(), f.dep.binding = NULL, expect_refused("mission binding is absent");
    upload_vector(), f.bind.mission_id = "", expect_refused("binding mission_id is empty");
    upload_vector(), f.bind.deployment_id = "", expect_refused("binding deployment_id is empty");
    upload_vector(), f.bind.mission_version = 0, expect_refused("binding mission_version is 0");
    upload_vector(), f.dep.command_id = "", expect_refused("mission command_id is empty");
    upload_vector(), f.bind.operator_id = "other",
        expect_refused("binding operator_id or aircraft_id differs from the command's");
    upload_vector(), f.bind.aircraft_id = "other",
        expect_refused("binding operator_id or aircraft_id differs from the command's");
    upload_vector(), f.bind.flight_id = "other",
        expect_refused("binding flight_id, intent_id or intent_version differs from the context's");
    upload_vector(), f.bind.intent_id = "other",
        expect_refused("binding flight_id, intent_id or intent_version differs from the context's");
    upload_vector(), f.bind.intent_version = 2,
        expect_refused("binding flight_id, intent_id or intent_version differs from the context's");
    upload_vector(), f.dep.issued_at_unix_ms = 2,
        expect_refused("mission issued or expires differs from the command's");
    upload_vector(), f.dep.expires_at_unix_ms = 30000,
        expect_refused("mission issued or expires differs from the command's");
    upload_vector(), f.dep.plan = NULL, expect_refused("mission plan is absent");
    upload_vector(), f.plan.n_items = 0, expect_refused("mission plan does not have 1 to 200 items");
    upload_vector(), f.bind.mission_digest = "6EFA96B36AF29A800D53EE7D7BAF57D4B24F00D9CE2B408327281E74824ACF4F",
        expect_refused("plan digest differs from binding.mission_digest");
    upload_vector(), f.item[0].altitude_m = 20.0f,
        expect_refused("plan digest differs from binding.mission_digest");
}

/* ---- 12.3 plan rules ------------------------------------------------------------ */

Test(command_digest, every_plan_rule_refuses)
{
    char hex[65];
    const char *why = NULL;

    cr_assert_eq(command_digest_plan(NULL, hex, &why), -1);
    cr_assert_str_eq(why, "mission plan is absent");
    plan_of(1), f.plan.schema_version = 0, expect_plan_refused("mission plan schema_version is not 1");
    plan_of(1), f.plan.n_items = 0, expect_plan_refused("mission plan does not have 1 to 200 items");
    plan_of(201), expect_plan_refused("mission plan does not have 1 to 200 items");
    plan_of(200);
    cr_assert_eq(command_digest_plan(&f.plan, hex, &why), 0, "refused: %s", why);
    plan_of(2), f.item[1].sequence = 0,
        expect_plan_refused("a mission item's sequence is not its index");
    plan_of(1), f.item[0].command = 17,
        expect_plan_refused("a mission item's command is not 16, 21, 22 or a final RTL 20 at 0,0,0");
}

/* 12.3 keeps 14.3's item order but the int32 altitude range (12.7 item 7). */
Test(command_digest, the_plan_digest_uses_the_int32_altitude_range)
{
    char hex[65];

    plan_of(1), f.item[0].altitude_m = 83887.0f;
    cr_assert_eq(command_digest_plan(&f.plan, hex, NULL), 0);
    /* p = 2^31 exactly: refused, not overflowed; p = -2^31 passes. */
    plan_of(1), f.item[0].altitude_m = 21474836.0f;
    cr_assert_eq(f.item[0].altitude_m * 100.0f, 2147483648.0f);
    expect_plan_refused("a mission item's altitude in centimeters is out of range");
    plan_of(1), f.item[0].altitude_m = -21474836.0f;
    cr_assert_eq(command_digest_plan(&f.plan, hex, NULL), 0);
    cr_assert_eq(command_digest_plan_items(&f.plan, false, NULL, 0), 0);
    cr_assert_eq(command_digest_plan_items(&f.plan, true, NULL, 0), -1);
}

/* ---- 14.3 rule 4 texts ------------------------------------------------------------ */

Test(command_digest, every_item_text_of_14_3)
{
    plan_of(2);
    cr_assert_str_empty(item_text());
    plan_of(2), f.items[1] = NULL;
    cr_assert_str_eq(item_text(), "mission item 1 is nil or contains unknown fields");
    plan_of(2), f.item[1].sequence = 2;
    cr_assert_str_eq(item_text(), "mission item 1 has non-contiguous sequence");
    plan_of(1), f.item[0].current = 1;
    cr_assert_str_eq(item_text(), "mission item 0 sets reserved current flag");
    plan_of(1), f.item[0].autocontinue = 0;
    cr_assert_str_eq(item_text(), "mission item 0 must enable autocontinue");
    plan_of(1), f.item[0].param1 = -0.0;
    cr_assert_str_eq(item_text(), "mission item 0 params 1 through 3 must be positive zero");
    plan_of(1), f.item[0].param3 = 1.0;
    cr_assert_str_eq(item_text(), "mission item 0 params 1 through 3 must be positive zero");
    plan_of(1), f.item[0].frame = 3;
    cr_assert_str_eq(item_text(), "mission item 0 uses unsupported frame 3");
    plan_of(1), f.item[0].command = 17;
    cr_assert_str_eq(item_text(), "mission item 0 uses unsupported command 17");
    plan_of(1), f.item[0].param4 = -0.0;
    cr_assert_str_eq(item_text(), "mission item 0 param4 must be positive zero for command 16");
    plan_of(1), f.item[0].command = 22, f.item[0].param4 = 2.0;
    cr_assert_str_eq(item_text(), "mission item 0 param4 must be positive zero for command 22");
    plan_of(1), f.item[0].command = 21;
    cr_assert_str_eq(item_text(), "mission item 0 param4 must be +1 for NAV_LAND");
    plan_of(1), f.item[0].command = 21, f.item[0].param4 = 1.0;
    cr_assert_str_empty(item_text());
    plan_of(1), f.item[0].latitude_e7 = 900000001;
    cr_assert_str_eq(item_text(), "mission item 0 has invalid coordinates");
    plan_of(1), f.item[0].longitude_e7 = -1800000001;
    cr_assert_str_eq(item_text(), "mission item 0 has invalid coordinates");
    plan_of(1), f.item[0].latitude_e7 = -900000000, f.item[0].longitude_e7 = 1800000000;
    cr_assert_str_empty(item_text());
}

Test(command_digest, upstreams_refused_altitudes)
{
    plan_of(1), f.item[0].altitude_m = float_of_bits(0x3f800001); /* 1.0000001f */
    cr_assert_str_eq(item_text(), "mission item 0 altitude must round-trip through ArduPilot "
                                  "truncating signed-centimeter storage");
    plan_of(1), f.item[0].altitude_m = -0.0f;
    cr_assert_str_eq(item_text(), "mission item 0 altitude must round-trip through ArduPilot "
                                  "truncating signed-centimeter storage");
    plan_of(1), f.item[0].altitude_m = INFINITY;
    cr_assert_str_eq(item_text(), "mission item 0 contains a non-finite value");
    plan_of(1), f.item[0].altitude_m = NAN;
    cr_assert_str_eq(item_text(), "mission item 0 contains a non-finite value");
    plan_of(1), f.item[0].altitude_m = 83887.0f;
    cr_assert_str_eq(item_text(), "mission item 0 altitude exceeds ArduPilot signed-centimeter storage");
    plan_of(1), f.item[0].altitude_m = 83886.07f;
    cr_assert_str_empty(item_text());
}

/* Ours: RTL (20) only last, at 0/0/0 with param4 +0; else the command text.
 * The altitude compares numerically: -0.0 gets the round-trip text. */
Test(command_digest, rtl_only_as_the_last_item_at_the_origin)
{
    plan_of(2), f.item[1].command = 20, f.item[1].latitude_e7 = 0, f.item[1].longitude_e7 = 0,
        f.item[1].altitude_m = 0.0f;
    cr_assert_str_empty(item_text());
    cr_assert_eq(command_digest_plan(&f.plan, (char[65]){0}, NULL), 0);
    f.item[0].command = 20, f.item[0].latitude_e7 = 0, f.item[0].longitude_e7 = 0,
        f.item[0].altitude_m = 0.0f;
    cr_assert_str_eq(item_text(), "mission item 0 uses unsupported command 20");
    plan_of(1), f.item[0].command = 20;
    cr_assert_str_eq(item_text(), "mission item 0 uses unsupported command 20");
    plan_of(1), f.item[0].command = 20, f.item[0].latitude_e7 = 0, f.item[0].longitude_e7 = 0,
        f.item[0].altitude_m = 0.0f, f.item[0].param4 = 1.0;
    cr_assert_str_eq(item_text(), "mission item 0 uses unsupported command 20");
    f.item[0].param4 = 0.0, f.item[0].altitude_m = -0.0f;
    cr_assert_str_eq(item_text(), "mission item 0 altitude must round-trip through ArduPilot "
                                  "truncating signed-centimeter storage");
}

Test(command_digest, a_short_text_buffer_is_truncated_not_overrun)
{
    char text[12];

    plan_of(1), f.item[0].frame = 3;
    cr_assert_eq(command_digest_plan_items(&f.plan, true, text, sizeof(text)), -1);
    cr_assert_str_eq(text, "mission ite");
}

/* ---- as protobuf-c delivers it: unknown fields, wire types, repeated ------------- */

Test(command_digest, a_decoded_command_digests_as_built)
{
    size_t n;
    uint8_t *buf;
    DurableCommand *c;

    start_vector();
    n = aeroarc__agent__v1__durable_command__get_packed_size(&f.cmd);
    buf = malloc(n);
    aeroarc__agent__v1__durable_command__pack(&f.cmd, buf);
    c = aeroarc__agent__v1__durable_command__unpack(NULL, n, buf);
    cr_assert_not_null(c);
    expect_digest(c, START_DIGEST);
    aeroarc__agent__v1__durable_command__free_unpacked(c, NULL);
    free(buf);
}

Test(command_digest, unknown_fields_in_every_listed_message_refuse)
{
    void *m;

    arm_vector(), m = with_unknown_field(&f.cmd);
    expect_refused_by(m, "DurableCommand has unknown fields");
    protobuf_c_message_free_unpacked(m, NULL);

    arm_vector(), f.cmd.context = m = with_unknown_field(&f.ctx);
    expect_refused("OperationContext has unknown fields");
    protobuf_c_message_free_unpacked(m, NULL);

    arm_vector(), f.cmd.mavlink = m = with_unknown_field(&f.mav);
    expect_refused("MavlinkExecution has unknown fields");
    protobuf_c_message_free_unpacked(m, NULL);

    start_vector(), f.mav.mission_precondition = m = with_unknown_field(&f.plan);
    expect_refused("MissionPlan has unknown fields");
    protobuf_c_message_free_unpacked(m, NULL);

    start_vector(), f.items[0] = m = with_unknown_field(&f.item[0]);
    expect_refused("a mission item is absent or has unknown fields");
    cr_assert_str_eq(item_text(), "mission item 0 is nil or contains unknown fields");
    protobuf_c_message_free_unpacked(m, NULL);

    upload_vector(), f.cmd.mission = m = with_unknown_field(&f.dep);
    expect_refused("DeployMissionCommand has unknown fields");
    protobuf_c_message_free_unpacked(m, NULL);

    upload_vector(), f.dep.binding = m = with_unknown_field(&f.bind);
    expect_refused("MissionBinding has unknown fields");
    protobuf_c_message_free_unpacked(m, NULL);

    upload_vector(), f.dep.plan = m = with_unknown_field(&f.plan);
    expect_refused("MissionPlan has unknown fields");
    protobuf_c_message_free_unpacked(m, NULL);
}

/* A known number with the wrong wire type never reaches the digest:
 * protobuf-c's unpack fails, and the caller refuses the request. */
Test(command_digest, a_known_field_with_the_wrong_wire_type_does_not_decode)
{
    size_t n;
    uint8_t *buf;

    arm_vector();
    n = aeroarc__agent__v1__durable_command__get_packed_size(&f.cmd);
    buf = malloc(n + 2);
    aeroarc__agent__v1__durable_command__pack(&f.cmd, buf);
    buf[n] = 0x08, buf[n + 1] = 0x01; /* command_id (a string) as a varint */
    cr_assert_null(aeroarc__agent__v1__durable_command__unpack(NULL, n + 2, buf));
    free(buf);
}

/* 12.7 item 6: three parameters packed, then four unpacked, read as one
 * list of seven: the worked example's digest. */
Test(command_digest, parameters_partly_packed_partly_unpacked_concatenate)
{
    static const uint8_t packed[] = {0x12, 12, 0, 0, 0x80, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t unpacked[] = {0x15, 0, 0, 0, 0};
    uint8_t buf[512];
    size_t n, m;
    DurableCommand *c;

    arm_vector();
    f.mav.n_parameters = 0;
    m = aeroarc__agent__v1__mavlink_execution__pack(&f.mav, buf + 300); /* the arm, body */
    memcpy(buf + 300 + m, packed, sizeof(packed)), m += sizeof(packed);
    for (int i = 0; i < 4; i++)
        memcpy(buf + 300 + m, unpacked, sizeof(unpacked)), m += sizeof(unpacked);
    cr_assert_lt(m, 128);
    f.cmd.execution_case = AEROARC__AGENT__V1__DURABLE_COMMAND__EXECUTION__NOT_SET;
    n = aeroarc__agent__v1__durable_command__pack(&f.cmd, buf);
    cr_assert_lt(n, 300 - 2);
    buf[n++] = 13 << 3 | 2, buf[n++] = (uint8_t)m; /* field 13, length m */
    memmove(buf + n, buf + 300, m), n += m;

    c = aeroarc__agent__v1__durable_command__unpack(NULL, n, buf);
    cr_assert_not_null(c);
    cr_assert_eq(c->execution_case, AEROARC__AGENT__V1__DURABLE_COMMAND__EXECUTION_MAVLINK);
    cr_assert_eq(c->mavlink->n_parameters, 7);
    cr_assert_eq(c->mavlink->parameters[0], 1.0f);
    expect_digest(c, ARM_DIGEST);
    aeroarc__agent__v1__durable_command__free_unpacked(c, NULL);
}

/* ---- UTF-8 ----------------------------------------------------------------------- */

Test(command_digest, utf8_follows_rfc_3629)
{
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"", true},
        {"agent-1", true},
        {"\xc3\xa9", true},             /* U+00E9 */
        {"\xe2\x82\xac", true},         /* U+20AC */
        {"\xef\xbf\xbf", true},         /* U+FFFF */
        {"\xf0\x9f\x9b\xa9", true},     /* U+1F6E9 */
        {"\xf4\x8f\xbf\xbf", true},     /* U+10FFFF */
        {"\x80", false},                /* stray continuation */
        {"\xc0\xaf", false},            /* overlong '/' */
        {"\xc1\xbf", false},            /* overlong */
        {"\xe0\x80\xaf", false},        /* overlong */
        {"\xe0\x9f\xbf", false},        /* overlong U+07FF */
        {"\xf0\x80\x80\xaf", false},    /* overlong */
        {"\xf0\x8f\xbf\xbf", false},    /* overlong U+FFFF */
        {"\xed\xa0\x80", false},        /* U+D800, a surrogate */
        {"\xed\xbf\xbf", false},        /* U+DFFF */
        {"\xf4\x90\x80\x80", false},    /* U+110000 */
        {"\xf5\x80\x80\x80", false},
        {"\xff", false},
        {"\xe2\x82", false},            /* truncated */
        {"a\xc3", false},               /* truncated at the end */
        {"\xe2\x28\xa1", false},        /* bad continuation */
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_expect_eq(command_digest_utf8(cases[i].s, strlen(cases[i].s)), cases[i].ok,
                     "case %zu", i);
}

Test(command_digest, invalid_utf8_anywhere_refuses)
{
    arm_vector(), f.cmd.command_id = "cmd-\xc0\xaf", expect_refused("a string is not valid UTF-8");
    arm_vector(), f.cmd.command_digest = "\xed\xa0\x80", expect_refused("a string is not valid UTF-8");
    arm_vector(), f.ctx.aircraft_id = "\xff", expect_refused("a string is not valid UTF-8");
    arm_vector(), f.mav.vehicle_profile = "\xe2\x82", expect_refused("a string is not valid UTF-8");
    upload_vector(), f.dep.command_id = "\x80", expect_refused("a string is not valid UTF-8");
    upload_vector(), f.bind.intent_id = "\xf4\x90\x80\x80",
        expect_refused("a string is not valid UTF-8");
}

/* ---- 14.3: DeployMission's validation, in order -------------------------------- */

/* The 14.3 text for f.dep; "" when it passes. */
static const char *deploy_text(void)
{
    static char text[160];
    text[0] = '\0';
    if (command_digest_deploy_check(&f.dep, text, sizeof(text)) == 0)
        cr_assert_str_empty(text);
    return text;
}

Test(command_digest, every_deploy_text_of_14_3)
{
    upload_vector();
    cr_assert_str_empty(deploy_text());
    upload_vector(), f.dep.binding = NULL;
    cr_assert_str_eq(deploy_text(), "command, binding, and plan are required");
    upload_vector(), f.dep.plan = NULL;
    cr_assert_str_eq(deploy_text(), "command, binding, and plan are required");
    cr_assert_eq(command_digest_deploy_check(NULL, (char[8]){0}, 8), -1);
    const char *blanks[] = {"", " upload-1", "upload-1\t", "\xc2\xa0upload-1",
                            "upload-1\xe3\x80\x80", "\xe2\x80\x8aupload-1"};
    for (size_t i = 0; i < sizeof(blanks) / sizeof(blanks[0]); i++) {
        upload_vector(), f.dep.command_id = (char *)blanks[i];
        cr_assert_str_eq(deploy_text(), "command_id must be non-empty and canonical", "%zu", i);
    }
    upload_vector(), f.dep.command_id = "upload\xe2\x80\x8b-1"; /* U+200B is no space */
    cr_assert_str_empty(deploy_text());
    char **ids[] = {&f.bind.mission_id,  &f.bind.mission_digest, &f.bind.deployment_id,
                    &f.bind.operator_id, &f.bind.aircraft_id,    &f.bind.flight_id,
                    &f.bind.intent_id};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        upload_vector(), *ids[i] = "";
        cr_assert_str_eq(deploy_text(),
                         "all mission binding identifiers must be non-empty and canonical");
        upload_vector(), *ids[i] = "x ";
        cr_assert_str_eq(deploy_text(),
                         "all mission binding identifiers must be non-empty and canonical");
    }
    upload_vector(), f.bind.mission_version = 0;
    cr_assert_str_eq(deploy_text(), "mission_version and intent_version must be positive");
    upload_vector(), f.bind.intent_version = 0;
    cr_assert_str_eq(deploy_text(), "mission_version and intent_version must be positive");
    const char *digests[] = {"6EFA96B36AF29A800D53EE7D7BAF57D4B24F00D9CE2B408327281E74824ACF4F",
                             "6efa96", PLAN_DIGEST "0", "zefa96b36af29a800d53ee7d7baf57d4b24f"
                                                    "00d9ce2b408327281e74824acf4f"};
    for (size_t i = 0; i < sizeof(digests) / sizeof(digests[0]); i++) {
        upload_vector(), f.bind.mission_digest = (char *)digests[i];
        cr_assert_str_eq(deploy_text(), "mission_digest must be lowercase hexadecimal SHA-256");
    }
    upload_vector(), f.dep.issued_at_unix_ms = 0;
    cr_assert_str_eq(deploy_text(), "mission command timestamps are invalid");
    upload_vector(), f.dep.expires_at_unix_ms = 1;
    cr_assert_str_eq(deploy_text(), "mission command timestamps are invalid");
    upload_vector(), f.dep.expires_at_unix_ms = 1 + 86400000; /* the window is 14.2 rule 11's */
    cr_assert_str_empty(deploy_text());
    upload_vector(), f.plan.schema_version = 2;
    cr_assert_str_eq(deploy_text(), "unsupported mission schema version 2");
    upload_vector(), f.plan.n_items = 0;
    cr_assert_str_eq(deploy_text(), "mission plan must contain 1 to 200 items");
    upload_vector(), plan_of(201);
    cr_assert_str_eq(deploy_text(), "mission plan must contain 1 to 200 items");
    upload_vector(), f.item[0].frame = 3;
    cr_assert_str_eq(deploy_text(), "mission item 0 uses unsupported frame 3");
    upload_vector(), f.item[0].altitude_m = 83887.0f;
    cr_assert_str_eq(deploy_text(),
                     "mission item 0 altitude exceeds ArduPilot signed-centimeter storage");
    upload_vector(), f.bind.mission_digest =
                         "0000000000000000000000000000000000000000000000000000000000000000";
    cr_assert_str_eq(deploy_text(), "mission_digest does not match the canonical plan");
    upload_vector(), f.item[0].altitude_m = 20.0f; /* valid, another plan */
    cr_assert_str_eq(deploy_text(), "mission_digest does not match the canonical plan");
}

Test(command_digest, deploy_unknown_fields_refuse_with_one_text)
{
    void *m;
    upload_vector(), m = with_unknown_field(&f.dep);
    cr_assert_eq(command_digest_deploy_check(m, (char[160]){0}, 160), -1);
    char text[160];
    command_digest_deploy_check(m, text, sizeof(text));
    cr_assert_str_eq(text, "mission command contains unknown fields");
    protobuf_c_message_free_unpacked(m, NULL);
    upload_vector(), f.dep.binding = m = with_unknown_field(&f.bind);
    cr_assert_str_eq(deploy_text(), "mission command contains unknown fields");
    protobuf_c_message_free_unpacked(m, NULL);
    upload_vector(), f.dep.plan = m = with_unknown_field(&f.plan);
    cr_assert_str_eq(deploy_text(), "mission command contains unknown fields");
    protobuf_c_message_free_unpacked(m, NULL);
    upload_vector(), f.items[0] = m = with_unknown_field(&f.item[0]);
    cr_assert_str_eq(deploy_text(), "mission item 0 is nil or contains unknown fields");
    protobuf_c_message_free_unpacked(m, NULL);
}

/* 14.2 rule 4. The mappings loader refuses empty fields and any byte
 * outside A-Z a-z 0-9 . _ - : (so no white space), so the blank case
 * cannot be reached through the relay: it is proven here. */
Test(command_digest, deploy_target_is_rule_4)
{
    upload_vector(); /* operator_id "operator", aircraft_id "aircraft" */
    const char *unmapped = "relay Agent mapping is not configured";
    const char *other = "mission binding does not match configured Agent mapping";
    cr_assert_null(command_digest_deploy_target(&f.bind, "operator", "aircraft"));
    cr_assert_str_eq(command_digest_deploy_target(&f.bind, NULL, NULL), unmapped);
    const char *blanks[] = {"", " ", "\t\r\n\v\f", "\xc2\xa0", "\xe3\x80\x80\xe2\x80\xa8"};
    for (size_t i = 0; i < sizeof(blanks) / sizeof(blanks[0]); i++) {
        cr_assert_str_eq(command_digest_deploy_target(&f.bind, blanks[i], "aircraft"), unmapped,
                         "%zu", i);
        cr_assert_str_eq(command_digest_deploy_target(&f.bind, "operator", blanks[i]), unmapped,
                         "%zu", i);
    }
    /* Blank wins over a mismatch; the comparison is byte-exact, untrimmed. */
    cr_assert_str_eq(command_digest_deploy_target(&f.bind, "someone-else", " "), unmapped);
    cr_assert_str_eq(command_digest_deploy_target(&f.bind, "someone-else", "aircraft"), other);
    cr_assert_str_eq(command_digest_deploy_target(&f.bind, "operator", "Aircraft"), other);
    cr_assert_str_eq(command_digest_deploy_target(&f.bind, " operator", "aircraft"), other);
    cr_assert_str_eq(command_digest_deploy_target(&f.bind, "operator", "aircraft\xc2\xa0"), other);
}

Test(command_digest, trim_space_is_go_trimspace)
{
    size_t a, n;
    const char s[] = "\xe1\x9a\x80 \x0b" "a b\xc2\x85\xe2\x80\xaf\xe2\x81\x9f";
    command_digest_trim_space(s, strlen(s), &a, &n);
    cr_assert_eq(a, 5);
    cr_assert_eq(n, 3);
    command_digest_trim_space(" \t ", 3, &a, &n);
    cr_assert_eq(n, 0);
}

//! The command tables, one per device type: SPC-4 commands every logical unit
//! implements, then each device type's own. A row holds everything the device server
//! needs to know about a command before executing it: its CDB usage data (SPC-4
//! 6.35.3, both what REPORT SUPPORTED OPERATION CODES returns and the mask the parser
//! enforces), nominal timeout, data direction, persistent-reservation access class
//! (SPC-4 Table 63), whether a pending unit attention (SAM-5 5.14) or another
//! nexus's SPC-2 reservation (SPC-2 5.5.1) lets it through, and whether the transport
//! may try it inline without blocking.

use super::{OpcodeInfo, PrAccess};

const FF: u8 = 0xff;

/// A row with the default attributes: no data, write-class, gated by unit
/// attentions and reservations, never inline.
const fn row(
    opcode: u8,
    service_action: Option<u8>,
    name: &'static str,
    nominal_timeout: u32,
    usage: &'static [u8],
) -> OpcodeInfo {
    OpcodeInfo::new(opcode, service_action, name, nominal_timeout, usage)
}

/// SPC-4 commands, common to every device type, in opcode order.
pub(super) static SPC: &[OpcodeInfo] = &[
    row(0x00, None, "TEST UNIT READY", 1, &[0x00, 0, 0, 0, 0, 0]).pr(PrAccess::Any),
    row(0x03, None, "REQUEST SENSE", 1, &[0x03, 0x01, 0, 0, FF, 0])
        .data_in()
        .pr(PrAccess::Any)
        .ua_exempt()
        .spc2_allowed(),
    row(0x12, None, "INQUIRY", 1, &[0x12, 0x01, FF, FF, FF, 0])
        .data_in()
        .pr(PrAccess::Any)
        .ua_exempt()
        .spc2_allowed(),
    row(0x15, None, "MODE SELECT(6)", 1, &[0x15, 0x11, 0, 0, FF, 0]).data_out(),
    row(0x16, None, "RESERVE(6)", 1, &[0x16, 0, 0, 0, 0, 0]),
    row(0x17, None, "RELEASE(6)", 1, &[0x17, 0, 0, 0, 0, 0]).spc2_allowed(),
    row(0x1a, None, "MODE SENSE(6)", 1, &[0x1a, 0x08, FF, FF, FF, 0])
        .data_in()
        .pr(PrAccess::Read),
    row(
        0x55,
        None,
        "MODE SELECT(10)",
        1,
        &[0x55, 0x11, 0, 0, 0, 0, 0, FF, FF, 0],
    )
    .data_out(),
    row(
        0x56,
        None,
        "RESERVE(10)",
        1,
        &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ),
    row(
        0x57,
        None,
        "RELEASE(10)",
        1,
        &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    )
    .spc2_allowed(),
    row(
        0x5a,
        None,
        "MODE SENSE(10)",
        1,
        &[0x5a, 0x18, FF, FF, 0, 0, 0, FF, FF, 0],
    )
    .data_in()
    .pr(PrAccess::Read),
    row(
        0x5e,
        Some(0x00),
        "PERSISTENT RESERVE IN / READ KEYS",
        1,
        &[0x5e, 0x00, 0, 0, 0, 0, 0, FF, FF, 0],
    )
    .data_in()
    .pr(PrAccess::Any),
    row(
        0x5e,
        Some(0x01),
        "PERSISTENT RESERVE IN / READ RESERVATION",
        1,
        &[0x5e, 0x01, 0, 0, 0, 0, 0, FF, FF, 0],
    )
    .data_in()
    .pr(PrAccess::Any),
    row(
        0x5e,
        Some(0x02),
        "PERSISTENT RESERVE IN / REPORT CAPABILITIES",
        1,
        &[0x5e, 0x02, 0, 0, 0, 0, 0, FF, FF, 0],
    )
    .data_in()
    .pr(PrAccess::Any),
    row(
        0x5e,
        Some(0x03),
        "PERSISTENT RESERVE IN / READ FULL STATUS",
        1,
        &[0x5e, 0x03, 0, 0, 0, 0, 0, FF, FF, 0],
    )
    .data_in()
    .pr(PrAccess::Any),
    row(
        0x5f,
        Some(0x00),
        "PERSISTENT RESERVE OUT / REGISTER",
        1,
        &[0x5f, 0x00, FF, 0, 0, FF, FF, FF, FF, 0],
    )
    .data_out()
    .pr(PrAccess::Any),
    row(
        0x5f,
        Some(0x01),
        "PERSISTENT RESERVE OUT / RESERVE",
        1,
        &[0x5f, 0x01, FF, 0, 0, FF, FF, FF, FF, 0],
    )
    .data_out()
    .pr(PrAccess::Any),
    row(
        0x5f,
        Some(0x02),
        "PERSISTENT RESERVE OUT / RELEASE",
        1,
        &[0x5f, 0x02, FF, 0, 0, FF, FF, FF, FF, 0],
    )
    .data_out()
    .pr(PrAccess::Any),
    row(
        0x5f,
        Some(0x03),
        "PERSISTENT RESERVE OUT / CLEAR",
        1,
        &[0x5f, 0x03, FF, 0, 0, FF, FF, FF, FF, 0],
    )
    .data_out()
    .pr(PrAccess::Any),
    row(
        0x5f,
        Some(0x04),
        "PERSISTENT RESERVE OUT / PREEMPT",
        1,
        &[0x5f, 0x04, FF, 0, 0, FF, FF, FF, FF, 0],
    )
    .data_out()
    .pr(PrAccess::Any),
    row(
        0x5f,
        Some(0x05),
        "PERSISTENT RESERVE OUT / PREEMPT AND ABORT",
        1,
        &[0x5f, 0x05, FF, 0, 0, FF, FF, FF, FF, 0],
    )
    .data_out()
    .pr(PrAccess::Any),
    row(
        0x5f,
        Some(0x06),
        "PERSISTENT RESERVE OUT / REGISTER AND IGNORE EXISTING KEY",
        1,
        &[0x5f, 0x06, FF, 0, 0, FF, FF, FF, FF, 0],
    )
    .data_out()
    .pr(PrAccess::Any),
    row(
        0x5f,
        Some(0x07),
        "PERSISTENT RESERVE OUT / REGISTER AND MOVE",
        1,
        &[0x5f, 0x07, FF, 0, 0, FF, FF, FF, FF, 0],
    )
    .data_out()
    .pr(PrAccess::Any),
    row(
        0x83,
        Some(0x00),
        "EXTENDED COPY(LID1)",
        3600,
        &[0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0],
    )
    .data_out()
    .pr(PrAccess::Any),
    row(
        0x83,
        Some(0x01),
        "EXTENDED COPY(LID4)",
        3600,
        &[0x83, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0],
    )
    .data_out()
    .pr(PrAccess::Any),
    row(
        0x83,
        Some(0x10),
        "POPULATE TOKEN",
        60,
        &[
            0x83, 0x10, 0, 0, 0, 0, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0,
        ],
    )
    .data_out()
    .pr(PrAccess::Read),
    row(
        0x83,
        Some(0x11),
        "WRITE USING TOKEN",
        60,
        &[
            0x83, 0x11, 0, 0, 0, 0, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0,
        ],
    )
    .data_out()
    .pr(PrAccess::Write),
    row(
        0x83,
        Some(0x1c),
        "COPY OPERATION ABORT",
        1,
        &[0x83, 0x1c, FF, FF, FF, FF, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    )
    .pr(PrAccess::Any),
    row(
        0x84,
        Some(0x00),
        "RECEIVE COPY STATUS(LID1)",
        1,
        &[0x84, 0x00, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0],
    )
    .data_in()
    .pr(PrAccess::Any),
    row(
        0x84,
        Some(0x01),
        "RECEIVE COPY DATA(LID1)",
        1,
        &[0x84, 0x01, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0],
    )
    .data_in()
    .pr(PrAccess::Any),
    row(
        0x84,
        Some(0x03),
        "RECEIVE COPY OPERATING PARAMETERS",
        1,
        &[0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0],
    )
    .data_in()
    .pr(PrAccess::Any),
    row(
        0x84,
        Some(0x04),
        "RECEIVE COPY FAILURE DETAILS(LID1)",
        1,
        &[0x84, 0x04, FF, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0],
    )
    .data_in()
    .pr(PrAccess::Any),
    row(
        0x84,
        Some(0x05),
        "RECEIVE COPY STATUS(LID4)",
        1,
        &[0x84, 0x05, FF, FF, FF, FF, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0],
    )
    .data_in()
    .pr(PrAccess::Any),
    row(
        0x84,
        Some(0x07),
        "RECEIVE ROD TOKEN INFORMATION",
        1,
        &[0x84, 0x07, FF, FF, FF, FF, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0],
    )
    .data_in()
    .pr(PrAccess::Any),
    row(
        0x84,
        Some(0x08),
        "REPORT ALL ROD TOKENS",
        1,
        &[0x84, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, FF, FF, FF, FF, 0, 0],
    )
    .data_in()
    .pr(PrAccess::Any),
    row(
        0xa0,
        None,
        "REPORT LUNS",
        1,
        &[0xa0, 0, FF, 0, 0, 0, FF, FF, FF, FF, 0, 0],
    )
    .data_in()
    .pr(PrAccess::Any)
    .ua_exempt()
    .spc2_allowed(),
    row(
        0xa3,
        Some(0x0c),
        "REPORT SUPPORTED OPERATION CODES",
        1,
        &[0xa3, 0x0c, 0x87, FF, FF, FF, FF, FF, FF, FF, 0, 0],
    )
    .data_in()
    .pr(PrAccess::Any)
    .spc2_allowed(),
    row(
        0xa3,
        Some(0x0d),
        "REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS",
        1,
        &[0xa3, 0x0d, 0x80, 0, 0, 0, FF, FF, FF, FF, 0, 0],
    )
    .data_in()
    .pr(PrAccess::Any)
    .spc2_allowed(),
];

/// SBC-3/SBC-4 direct-access block commands, in opcode order.
pub(super) static SBC: &[OpcodeInfo] = &[
    row(0x08, None, "READ(6)", 30, &[0x08, 0x1f, FF, FF, FF, 0])
        .data_in()
        .pr(PrAccess::Read)
        .inline(),
    row(0x0a, None, "WRITE(6)", 30, &[0x0a, 0x1f, FF, FF, FF, 0])
        .data_out()
        .inline(),
    row(
        0x1b,
        None,
        "START STOP UNIT",
        30,
        &[0x1b, 0x01, 0, 0x0f, 0xf7, 0],
    ),
    row(
        0x1e,
        None,
        "PREVENT ALLOW MEDIUM REMOVAL",
        1,
        &[0x1e, 0, 0, 0, 0x03, 0],
    ),
    row(
        0x25,
        None,
        "READ CAPACITY(10)",
        1,
        &[0x25, 0, FF, FF, FF, FF, 0, 0, 0x01, 0],
    )
    .data_in()
    .pr(PrAccess::Any),
    row(
        0x28,
        None,
        "READ(10)",
        30,
        &[0x28, 0x18, FF, FF, FF, FF, 0x1f, FF, FF, 0],
    )
    .data_in()
    .pr(PrAccess::Read)
    .inline(),
    row(
        0x2a,
        None,
        "WRITE(10)",
        30,
        &[0x2a, 0x18, FF, FF, FF, FF, 0x1f, FF, FF, 0],
    )
    .data_out()
    .inline(),
    row(
        0x2e,
        None,
        "WRITE AND VERIFY(10)",
        30,
        &[0x2e, 0x16, FF, FF, FF, FF, 0x1f, FF, FF, 0],
    )
    .data_out(),
    row(
        0x2f,
        None,
        "VERIFY(10)",
        30,
        &[0x2f, 0x16, FF, FF, FF, FF, 0x1f, FF, FF, 0],
    )
    .data_out()
    .pr(PrAccess::Read),
    row(
        0x34,
        None,
        "PRE-FETCH(10)",
        30,
        &[0x34, 0x02, FF, FF, FF, FF, 0x1f, FF, FF, 0],
    )
    .pr(PrAccess::Read),
    row(
        0x35,
        None,
        "SYNCHRONIZE CACHE(10)",
        60,
        // SYNC_NV (SBC-3 5.22; obsolete in SBC-4) is accepted: a flush to the
        // medium satisfies it either way.
        &[0x35, 0x06, FF, FF, FF, FF, 0x1f, FF, FF, 0],
    ),
    row(
        0x37,
        None,
        "READ DEFECT DATA(10)",
        1,
        &[0x37, 0, 0x1f, 0, 0, 0, 0, FF, FF, 0],
    )
    .data_in()
    .pr(PrAccess::Read),
    row(
        0x41,
        None,
        "WRITE SAME(10)",
        60,
        &[0x41, 0x18, FF, FF, FF, FF, 0x1f, FF, FF, 0],
    )
    .data_out(),
    row(
        0x42,
        None,
        "UNMAP",
        60,
        &[0x42, 0x01, 0, 0, 0, 0, 0x1f, FF, FF, 0],
    )
    .data_out(),
    // SANITIZE (SBC-4 5.30): IMMED, AUSE and the service action in byte 1; the
    // parameter list (OVERWRITE only) in bytes 7-8. CRYPTOGRAPHIC ERASE (03h) is not
    // offered: no backstore encrypts, so there is no key to destroy.
    row(
        0x48,
        Some(0x01),
        "SANITIZE OVERWRITE",
        3600,
        &[0x48, 0xa1, 0, 0, 0, 0, 0, FF, FF, 0],
    )
    .data_out(),
    row(
        0x48,
        Some(0x02),
        "SANITIZE BLOCK ERASE",
        60,
        &[0x48, 0xa2, 0, 0, 0, 0, 0, FF, FF, 0],
    )
    .data_out(),
    row(
        0x48,
        Some(0x1f),
        "SANITIZE EXIT FAILURE MODE",
        1,
        &[0x48, 0xbf, 0, 0, 0, 0, 0, FF, FF, 0],
    )
    .data_out(),
    row(
        0x88,
        None,
        "READ(16)",
        30,
        &[
            0x88, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0,
        ],
    )
    .data_in()
    .pr(PrAccess::Read)
    .inline(),
    row(
        0x89,
        None,
        "COMPARE AND WRITE",
        30,
        &[
            0x89, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0, 0, FF, 0x1f, 0,
        ],
    )
    .data_out(),
    row(
        0x8a,
        None,
        "WRITE(16)",
        30,
        &[
            0x8a, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0,
        ],
    )
    .data_out()
    .inline(),
    row(
        0x8b,
        None,
        "ORWRITE(16)",
        30,
        &[
            0x8b, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0,
        ],
    )
    .data_out(),
    row(
        0x8e,
        None,
        "WRITE AND VERIFY(16)",
        30,
        &[
            0x8e, 0x16, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0,
        ],
    )
    .data_out(),
    row(
        0x8f,
        None,
        "VERIFY(16)",
        30,
        &[
            0x8f, 0x16, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0,
        ],
    )
    .data_out()
    .pr(PrAccess::Read),
    row(
        0x90,
        None,
        "PRE-FETCH(16)",
        30,
        &[
            0x90, 0x02, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0,
        ],
    )
    .pr(PrAccess::Read),
    row(
        0x91,
        None,
        "SYNCHRONIZE CACHE(16)",
        60,
        &[
            0x91, 0x06, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0,
        ],
    ),
    row(
        0x93,
        None,
        "WRITE SAME(16)",
        60,
        &[
            0x93, 0x19, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0,
        ],
    )
    .data_out(),
    row(
        0x9c,
        None,
        "WRITE ATOMIC(16)",
        30,
        &[
            0x9c, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0, FF, FF, 0x1f, 0,
        ],
    )
    .data_out(),
    row(
        0x9e,
        Some(0x10),
        "READ CAPACITY(16)",
        1,
        &[
            0x9e, 0x10, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x01, 0,
        ],
    )
    .data_in()
    .pr(PrAccess::Any),
    row(
        0x9e,
        Some(0x12),
        "GET LBA STATUS",
        1,
        &[
            0x9e, 0x12, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0,
        ],
    )
    .data_in()
    .pr(PrAccess::Read),
    row(
        0xa8,
        None,
        "READ(12)",
        30,
        &[0xa8, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0],
    )
    .data_in()
    .pr(PrAccess::Read)
    .inline(),
    row(
        0xaa,
        None,
        "WRITE(12)",
        30,
        &[0xaa, 0x18, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0],
    )
    .data_out()
    .inline(),
    row(
        0xae,
        None,
        "WRITE AND VERIFY(12)",
        30,
        &[0xae, 0x16, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0],
    )
    .data_out(),
    row(
        0xaf,
        None,
        "VERIFY(12)",
        30,
        &[0xaf, 0x16, FF, FF, FF, FF, FF, FF, FF, FF, 0x1f, 0],
    )
    .data_out()
    .pr(PrAccess::Read),
    row(
        0xb7,
        None,
        "READ DEFECT DATA(12)",
        1,
        &[0xb7, 0x1f, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0],
    )
    .data_in()
    .pr(PrAccess::Read),
];

/// SSC-3 commands of a stream (tape) device, in opcode order. Positioning and
/// reading are read-class for persistent reservations (SSC-3), writing,
/// erasing and LOAD UNLOAD write-class.
pub(super) static SSC: &[OpcodeInfo] = &[
    row(0x01, None, "REWIND", 300, &[0x01, 0x01, 0, 0, 0, 0]).pr(PrAccess::Read),
    row(
        0x05,
        None,
        "READ BLOCK LIMITS",
        1,
        &[0x05, 0x01, 0, 0, 0, 0],
    )
    .data_in()
    .pr(PrAccess::Any),
    row(0x08, None, "READ(6)", 300, &[0x08, 0x03, FF, FF, FF, 0])
        .data_in()
        .pr(PrAccess::Read),
    row(0x0a, None, "WRITE(6)", 300, &[0x0a, 0x01, FF, FF, FF, 0]).data_out(),
    row(
        0x10,
        None,
        "WRITE FILEMARKS(6)",
        300,
        &[0x10, 0x01, FF, FF, FF, 0],
    ),
    row(0x11, None, "SPACE(6)", 300, &[0x11, 0x0f, FF, FF, FF, 0]).pr(PrAccess::Read),
    row(0x19, None, "ERASE(6)", 3600, &[0x19, 0x03, 0, 0, 0, 0]),
    row(0x1b, None, "LOAD UNLOAD", 300, &[0x1b, 0x01, 0, 0, 0x0f, 0]),
    row(
        0x1e,
        None,
        "PREVENT ALLOW MEDIUM REMOVAL",
        1,
        &[0x1e, 0, 0, 0, 0x03, 0],
    ),
    row(
        0x2b,
        None,
        "LOCATE(10)",
        300,
        &[0x2b, 0x07, 0, FF, FF, FF, FF, 0, FF, 0],
    )
    .pr(PrAccess::Read),
    row(
        0x34,
        Some(0x00),
        "READ POSITION (SHORT FORM - BLOCK ID)",
        1,
        &[0x34, 0x00, 0, 0, 0, 0, 0, FF, FF, 0],
    )
    .data_in()
    .pr(PrAccess::Read),
    row(
        0x34,
        Some(0x01),
        "READ POSITION (SHORT FORM - VENDOR SPECIFIC)",
        1,
        &[0x34, 0x01, 0, 0, 0, 0, 0, FF, FF, 0],
    )
    .data_in()
    .pr(PrAccess::Read),
    row(
        0x34,
        Some(0x06),
        "READ POSITION (LONG FORM)",
        1,
        &[0x34, 0x06, 0, 0, 0, 0, 0, FF, FF, 0],
    )
    .data_in()
    .pr(PrAccess::Read),
    row(
        0x34,
        Some(0x08),
        "READ POSITION (EXTENDED FORM)",
        1,
        &[0x34, 0x08, 0, 0, 0, 0, 0, FF, FF, 0],
    )
    .data_in()
    .pr(PrAccess::Read),
    row(
        0x44,
        None,
        "REPORT DENSITY SUPPORT",
        1,
        &[0x44, 0x03, 0, 0, 0, 0, 0, FF, FF, 0],
    )
    .data_in()
    .pr(PrAccess::Any),
    row(
        0x91,
        None,
        "SPACE(16)",
        300,
        &[0x91, 0x0f, 0, 0, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0, 0, 0],
    )
    .pr(PrAccess::Read),
    row(
        0x92,
        None,
        "LOCATE(16)",
        300,
        &[
            0x92, 0x03, 0, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0, 0, 0,
        ],
    )
    .pr(PrAccess::Read),
];

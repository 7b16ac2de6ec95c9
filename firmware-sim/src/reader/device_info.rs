//! The Reset Device response, modelled on the UX300 capture
//! (`tests/data/vipa/reset-response-ux300-chained.hex`): top-level `9F1C` and `DFA242`, an `EE`
//! for the reader and one for the PIN pad, `F0 { DF8111 }`, then `EF` software components
//! including `MAPP` whose libraries list `VIPA`. About 760 bytes, so it always takes three
//! chained frames, as the capture does.

use bytes::Bytes;
use emvbridge_protocol::tlv::{Tag, TlvBuilder};

/// VIPA version reported in `EF`/`MAPP`/`DF8106 "VIPA"`.
pub const VIPA_VERSION: &str = "6.8.2.24";

fn libs(b: &mut TlvBuilder, pairs: &[(&str, &str)]) {
    for (name, version) in pairs {
        b.primitive(Tag::VIPA_LIB_NAME, name.as_bytes());
        b.primitive(Tag::VIPA_LIB_VERSION, version.as_bytes());
    }
}

fn component(b: &mut TlvBuilder, name: &str, version: &str, pairs: &[(&str, &str)]) {
    b.constructed(Tag::VIPA_SOFTWARE_COMPONENT, |b| {
        b.primitive(Tag::VIPA_NAME, name.as_bytes());
        b.primitive(Tag::VIPA_VERSION, version.as_bytes());
        libs(b, pairs);
    });
}

/// The response data (without SW) for `terminal_id` (9F1C) and `serial` (9F1E).
pub fn reset_response(terminal_id: &[u8], serial: &[u8]) -> Bytes {
    let mut b = TlvBuilder::with_capacity(800);
    b.primitive(Tag::TERMINAL_IDENTIFICATION, terminal_id);
    b.primitive(Tag(0xDFA242), b"030000");
    b.constructed(Tag::VIPA_DEVICE_INFO, |b| {
        b.primitive(Tag::IFD_SERIAL_NUMBER, serial);
        b.primitive(Tag(0xDF8108), b"Architecture");
        b.primitive(Tag(0xDF8109), b"V/OS");
        b.primitive(Tag::VIPA_NAME, b"UX300");
        b.primitive(Tag::VIPA_VERSION, b"release-31013400");
        libs(
            b,
            &[
                ("SBI", "03.13"),
                ("CIB", "30025000000"),
                ("CIB_VER", "03.22"),
            ],
        );
        b.primitive(Tag(0xDF8102), &[0x00]);
        b.primitive(Tag(0xDF8101), &[0x00]);
        b.primitive(Tag(0xDFEC1F), &[0x00, 0x00, 0x71, 0x6B]);
    });
    b.constructed(Tag::VIPA_DEVICE_INFO, |b| {
        b.primitive(Tag(0xDF8108), b"Architecture");
        b.primitive(Tag(0xDF8109), b"V/OS");
        b.primitive(Tag::VIPA_NAME, b"UX100");
        b.primitive(Tag::VIPA_VERSION, b"DL.FWUX.01.05.06.0028.WW01.tgz");
        b.primitive(Tag(0xDF8102), &[0x00]);
        b.primitive(Tag(0xDF8101), &[0x00]);
        b.primitive(Tag::IFD_SERIAL_NUMBER, b"986109194");
    });
    b.constructed(Tag::VIPA_F0, |b| {
        b.primitive(Tag(0xDF8111), &[0x00]);
    });
    component(&mut b, "RELEASE", VIPA_VERSION, &[]);
    b.constructed(Tag::VIPA_SOFTWARE_COMPONENT, |b| {
        libs(b, &[("VSD SRED Library", "0.0.0.17")]);
        b.primitive(Tag(0xDFDB0E), &[0x00, 0x00, 0x0C, 0x01]);
        b.primitive(Tag(0xDFDB08), &[0x00, 0x00, 0x00, 0x00]);
        b.primitive(Tag(0xDFDB09), &[0x5A; 32]);
        b.primitive(Tag(0xDFA21D), &[0x00, 0x20, 0x00, 0x00]);
        b.primitive(Tag(0xDFA21E), &[0x00, 0x00, 0x00, 0x07]);
    });
    component(&mut b, "AUTHAPP", "0.0.0.5", &[]);
    component(
        &mut b,
        "CICAPP",
        "2.0.5.3",
        &[
            ("ADK_EMV_CTLS_Fr", "5.40.5-92"),
            ("ADK_EMV_CTLS_Ke", "EP2.0.4l;MK2.2."),
            ("EMV_Kernel", "EP2.0.4l;MK2.2."),
        ],
    );
    component(&mut b, "GUIPROXY_APP", "1.0.0.0", &[]);
    component(
        &mut b,
        "MAPP",
        "2.0.0.7",
        &[
            ("ADK", ""),
            ("VIPA", VIPA_VERSION),
            ("libpinGUI", "2.0.2.0"),
            ("libsred", "0.0.0.17"),
        ],
    );
    component(&mut b, "WATCHDOG", "1.0.0.0", &[]);
    component(
        &mut b,
        "CARDAPP",
        "",
        &[
            ("ADK_EMV_CT_Fram", "4.10.5-92"),
            ("ADK_EMV_CT_Kern", "L27.0.3l"),
        ],
    );
    b.freeze()
}

/// The captured Reset Device answer data (without SW) of a logged reader: `ux300`, `ux301`,
/// `m400` or `p400plus`; `None` for another name.
pub fn captured_reset(model: &str) -> Option<Bytes> {
    let text = match model {
        "ux300" => include_str!("captured/ux300-reset.hex"),
        "ux301" => include_str!("captured/ux301-reset.hex"),
        "m400" => include_str!("captured/m400-reset.hex"),
        "p400plus" => include_str!("captured/p400plus-reset.hex"),
        _ => return None,
    };
    let hex_line = text.lines().find(|l| !l.starts_with('#'))?;
    hex::decode(hex_line.trim()).ok().map(Bytes::from)
}

//! The BER-TLV benchmark corpus: realistic EMV card responses and VIPA templates, built with
//! [`TlvBuilder`] so no length is computed by hand.
//!
//! Shared by `benches/tlv.rs` and `tests/alloc_free.rs` (included with `#[path]`), so the
//! allocation test walks exactly the bytes the benchmarks measure.
//!
//! Every message here is in the subset of BER that all compared crates.io parsers accept:
//! no `00` padding (EMV Book 3 B3), tags of at most three bytes, shortest-form lengths.
//! [`edge_cases`] holds the EMV-legal inputs outside that subset, to report who rejects what.
#![allow(dead_code)]

use emvbridge_protocol::tlv::{Tag, TlvBuilder};

/// Size budget of the concatenated stream.
pub const STREAM_LEN: usize = 64 * 1024;

/// The tag searched for: Application Cryptogram.
pub const NEEDLE: Tag = Tag::APPLICATION_CRYPTOGRAM;

/// A tag that appears nowhere in the corpus, for the "absent" search.
pub const ABSENT: Tag = Tag(0x9F7F);

/// One complete response (or command data field), as the reader or card sends it.
pub struct Message {
    /// What it is, for benchmark ids.
    pub name: &'static str,
    /// BER-TLV bytes: one or more top-level objects.
    pub bytes: Vec<u8>,
}

/// Deterministic filler for cryptographic-looking values (certificates, ciphertext, MACs).
fn filler(seed: u32, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9) | 1;
    (0..n)
        .map(|_| {
            // xorshift32
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// The `E2` of vipa-protocol.md §5.1 (captured on a UX300, VIPA 6.8.2.24; PAN masked by the
/// device): the INF of the response frame without SW1 SW2.
const CAPTURED_E2: &str = "E281E5C10100FF7F4EDFDF1208ED02AA537757D99FDFDF110AFFFF98765432110010A4\
DFDF102031846E94DC3183BA6DC45E2A6AC6DEF03F93434756A4D0261572B5C23519BFC0DFDB0F0400000000\
DFDB0E0400000D015010414D45524943414E20455850524553535713374245AAAAA1006D2412201AAAAAAAAA\
AAAAAA5A08374245AAAAA1006F5F24032412315F25031711015F280208405F300202015F3401009F0606A000\
000025019F0702FF009F080200019F09020001FF7C2BDF837F20FDCC8BA35EE1901DE86A23AF78F5A636FC9E\
3E1541FB8ED46E34DF6C12ED1260DF837E03E7C4D9";

/// The `E0` of the captured Start Transaction (vipa-protocol.md §5.1).
const CAPTURED_E0: &str = "E0349C01009F02060000000032509F03060000000000009A032103039F2103195724\
9F1A0208405F2A020840DFA21401 01DFA2180100";

fn unhex(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    hex::decode(clean).expect("corpus hex is valid")
}

fn built(f: impl FnOnce(&mut TlvBuilder)) -> Vec<u8> {
    let mut b = TlvBuilder::new();
    f(&mut b);
    b.as_bytes().to_vec()
}

fn app_template(b: &mut TlvBuilder, aid: &[u8], label: &[u8], priority: u8) {
    b.constructed(Tag::APPLICATION_TEMPLATE, |b| {
        b.primitive(Tag::AID, aid);
        b.primitive(Tag::APPLICATION_LABEL, label);
        b.primitive(Tag::APPLICATION_PRIORITY_INDICATOR, &[priority]);
    });
}

/// SELECT PPSE response: `6F` › `A5` › `BF0C` › several `61` entries.
fn fci_ppse() -> Vec<u8> {
    built(|b| {
        b.constructed(Tag::FCI_TEMPLATE, |b| {
            b.primitive(Tag::DF_NAME, b"2PAY.SYS.DDF01");
            b.constructed(Tag::FCI_PROPRIETARY_TEMPLATE, |b| {
                b.constructed(Tag::FCI_ISSUER_DISCRETIONARY_DATA, |b| {
                    app_template(b, &[0xA0, 0, 0, 0, 0x03, 0x10, 0x10], b"VISA CREDIT", 1);
                    app_template(b, &[0xA0, 0, 0, 0, 0x04, 0x10, 0x10], b"MASTERCARD", 2);
                    app_template(b, &[0xA0, 0, 0, 0, 0x25, 0x01, 0x08, 0x01], b"AMEX", 3);
                    app_template(b, &[0xA0, 0, 0, 0, 0x03, 0x20, 0x10], b"VISA ELECTRON", 4);
                    app_template(b, &[0xA0, 0, 0, 0x01, 0x52, 0x30, 0x10], b"DISCOVER", 5);
                });
            });
        });
    })
}

/// SELECT ADF response: `6F` › `A5` (label, PDOL, language) › `BF0C`.
fn fci_adf() -> Vec<u8> {
    built(|b| {
        b.constructed(Tag::FCI_TEMPLATE, |b| {
            b.primitive(Tag::DF_NAME, &[0xA0, 0, 0, 0, 0x03, 0x10, 0x10]);
            b.constructed(Tag::FCI_PROPRIETARY_TEMPLATE, |b| {
                b.primitive(Tag::APPLICATION_LABEL, b"VISA CREDIT");
                b.primitive(Tag::APPLICATION_PRIORITY_INDICATOR, &[0x01]);
                // PDOL: 9F66 04, 9F02 06, 9F03 06, 9F1A 02, 95 05, 5F2A 02, 9A 03, 9C 01, 9F37 04
                b.primitive(
                    Tag::PDOL,
                    &unhex("9F66049F02069F03069F1A0295055F2A029A039C019F3704"),
                );
                b.primitive(Tag::LANGUAGE_PREFERENCE, b"enfr");
                b.primitive(Tag::ISSUER_CODE_TABLE_INDEX, &[0x01]);
                b.primitive(Tag::APPLICATION_PREFERRED_NAME, b"Visa Credit");
                b.constructed(Tag::FCI_ISSUER_DISCRETIONARY_DATA, |b| {
                    b.primitive(Tag(0x9F4D), &[0x0B, 0x0A]);
                    b.primitive(Tag(0x5F55), b"US");
                    b.primitive(Tag(0x42), &[0x47, 0x61, 0x73]);
                });
            });
        });
    })
}

/// GET PROCESSING OPTIONS response, format 2: `77` › `82` AIP, `94` AFL.
fn gpo() -> Vec<u8> {
    built(|b| {
        b.constructed(Tag::RESPONSE_TEMPLATE_2, |b| {
            b.primitive(Tag::AIP, &[0x19, 0x80]);
            b.primitive(Tag::AFL, &unhex("08010100 10010301 18010200 20010100"));
        });
    })
}

/// READ RECORD responses (`70`), from track data to certificate-sized values.
fn records() -> Vec<(&'static str, Vec<u8>)> {
    let track2 = unhex("4761739001010010D25122011143804400000F");
    let r1 = built(|b| {
        b.constructed(Tag::RECORD_TEMPLATE, |b| {
            b.primitive(Tag::TRACK2_EQUIVALENT, &track2);
            b.primitive(Tag::CARDHOLDER_NAME, b"CARDHOLDER/VISA");
            b.primitive(Tag::TRACK1_DISCRETIONARY, b"11438044000000000000");
        });
    });
    let r2 = built(|b| {
        b.constructed(Tag::RECORD_TEMPLATE, |b| {
            b.primitive(Tag::PAN, &unhex("4761739001010010"));
            b.primitive(Tag::APPLICATION_EXPIRATION_DATE, &[0x25, 0x12, 0x31]);
            b.primitive(Tag::APPLICATION_EFFECTIVE_DATE, &[0x20, 0x01, 0x01]);
            b.primitive(Tag::ISSUER_COUNTRY_CODE, &[0x08, 0x40]);
            b.primitive(Tag::PAN_SEQUENCE_NUMBER, &[0x01]);
            b.primitive(Tag::APPLICATION_USAGE_CONTROL, &[0xFF, 0x00]);
            b.primitive(Tag::IAC_DEFAULT, &[0xFC, 0x50, 0xAC, 0xA0, 0x00]);
            b.primitive(Tag::IAC_DENIAL, &[0x00, 0x00, 0x00, 0x00, 0x00]);
            b.primitive(Tag::IAC_ONLINE, &[0xFC, 0x70, 0xBC, 0xF8, 0x00]);
            b.primitive(
                Tag::CDOL1,
                &unhex("9F02069F03069F1A0295055F2A029A039C019F37049F35019F45029F4C089F3403"),
            );
            b.primitive(Tag::CDOL2, &unhex("910A8A0295059F37049F4C08"));
            b.primitive(Tag::CVM_LIST, &unhex("000000000000000042031E031F03"));
            b.primitive(Tag::APPLICATION_VERSION_NUMBER_CARD, &[0x00, 0x8C]);
            b.primitive(Tag::SERVICE_CODE, &[0x02, 0x01]);
        });
    });
    // Issuer public key certificate (1152-bit CA key: 144 bytes) and remainder: `81 xx` lengths.
    let r3 = built(|b| {
        b.constructed(Tag::RECORD_TEMPLATE, |b| {
            b.primitive(Tag::CA_PUBLIC_KEY_INDEX, &[0x92]);
            b.primitive(Tag::ISSUER_PUBLIC_KEY_CERTIFICATE, &filler(3, 176));
            b.primitive(Tag::ISSUER_PUBLIC_KEY_REMAINDER, &filler(4, 36));
            b.primitive(Tag(0x9F32), &[0x03]);
        });
    });
    // Signed static data and ICC public key certificate: the record exceeds 255 bytes (`82 xxxx`).
    let r4 = built(|b| {
        b.constructed(Tag::RECORD_TEMPLATE, |b| {
            b.primitive(Tag::SIGNED_STATIC_APPLICATION_DATA, &filler(5, 176));
            b.primitive(Tag(0x9F46), &filler(6, 176));
            b.primitive(Tag(0x9F47), &[0x03]);
            b.primitive(Tag(0x9F48), &filler(7, 42));
            b.primitive(Tag::DDOL, &[0x9F, 0x37, 0x04]);
            b.primitive(Tag(0x9F4A), &[0x82]);
        });
    });
    vec![
        ("record_track2", r1),
        ("record_pan_cdol", r2),
        ("record_issuer_cert", r3),
        ("record_icc_cert", r4),
    ]
}

/// GENERATE AC response, format 1: `80` CID ATC AC IAD (a primitive: nothing inside is a TLV).
fn genac_format1() -> Vec<u8> {
    let mut v = vec![0x80, 0x00, 0x2F];
    v.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
    v.extend_from_slice(&unhex("06010A03A0B800"));
    built(|b| {
        b.primitive(Tag::RESPONSE_TEMPLATE_1, &v);
    })
}

/// GENERATE AC response, format 2: `77` › `9F27` `9F36` `9F26` `9F10` (and CDA signature).
fn genac_format2(cda: bool) -> Vec<u8> {
    built(|b| {
        b.constructed(Tag::RESPONSE_TEMPLATE_2, |b| {
            b.primitive(Tag::CRYPTOGRAM_INFORMATION_DATA, &[0x80]);
            b.primitive(Tag::ATC, &[0x00, 0x2F]);
            b.primitive(
                Tag::APPLICATION_CRYPTOGRAM,
                &[0xA1, 0xB2, 0xC3, 0xD4, 0xE5, 0xF6, 0x07, 0x18],
            );
            b.primitive(
                Tag::ISSUER_APPLICATION_DATA,
                &unhex("06010A03A0B8000F00000000000000000000"),
            );
            if cda {
                b.primitive(Tag(0x9F4B), &filler(8, 144));
            }
        });
    })
}

/// VIPA `E4` "online action required" with the ARQC data and an SRED `FF7F` container.
fn vipa_e4() -> Vec<u8> {
    built(|b| {
        b.constructed(Tag::VIPA_E4, |b| {
            b.primitive(Tag::CRYPTOGRAM_INFORMATION_DATA, &[0x80]);
            b.primitive(
                Tag::APPLICATION_CRYPTOGRAM,
                &[0x5E, 0x4D, 0x3C, 0x2B, 0x1A, 0x09, 0xF8, 0xE7],
            );
            b.primitive(Tag::ATC, &[0x00, 0x30]);
            b.primitive(
                Tag::ISSUER_APPLICATION_DATA,
                &unhex("06010A03A0B8000F00000000000000000000"),
            );
            b.primitive(Tag::TVR, &[0x00, 0x00, 0x00, 0x80, 0x00]);
            b.primitive(Tag::TSI, &[0xE8, 0x00]);
            b.primitive(Tag::CVM_RESULTS, &[0x42, 0x03, 0x00]);
            b.primitive(Tag::AMOUNT_AUTHORISED, &[0, 0, 0, 0, 0x32, 0x50]);
            b.primitive(Tag::TRANSACTION_CURRENCY_CODE, &[0x08, 0x40]);
            b.primitive(Tag::TRANSACTION_DATE, &[0x21, 0x03, 0x03]);
            b.primitive(Tag::TRANSACTION_TYPE, &[0x00]);
            b.primitive(Tag::UNPREDICTABLE_NUMBER, &[0x1C, 0x2D, 0x3E, 0x4F]);
            b.primitive(Tag::AIP, &[0x19, 0x80]);
            b.primitive(Tag::AID_TERMINAL, &[0xA0, 0, 0, 0, 0x03, 0x10, 0x10]);
            b.primitive(Tag::PAN_SEQUENCE_NUMBER, &[0x01]);
            b.constructed(Tag::VIPA_SRED, |b| {
                b.primitive(Tag::VIPA_SRED_IV, &filler(9, 8));
                b.primitive(Tag::VIPA_SRED_KSN, &unhex("FFFF98765432110010A5"));
                b.primitive(Tag::VIPA_SRED_DATA, &filler(10, 200));
                b.primitive(Tag(0xDFDB0F), &[0, 0, 0, 0]);
            });
            b.primitive(Tag::VIPA_PIN_BLOCK, &filler(11, 8));
            b.primitive(Tag(0xDFA214), &[0x01]);
        });
    })
}

/// VIPA `E3` "approved" with the TC.
fn vipa_e3() -> Vec<u8> {
    built(|b| {
        b.constructed(Tag::VIPA_E3, |b| {
            b.primitive(Tag::CRYPTOGRAM_INFORMATION_DATA, &[0x40]);
            b.primitive(
                Tag::APPLICATION_CRYPTOGRAM,
                &[0x71, 0x62, 0x53, 0x44, 0x35, 0x26, 0x17, 0x08],
            );
            b.primitive(Tag::ATC, &[0x00, 0x30]);
            b.primitive(Tag::AUTHORISATION_RESPONSE_CODE, b"00");
            b.primitive(Tag::TSI, &[0xF8, 0x00]);
            b.primitive(Tag::ISSUER_SCRIPT_RESULTS, &[0x20, 0, 0, 0, 0]);
        });
    })
}

/// VIPA `E6` status notification (PIN entry).
fn vipa_e6() -> Vec<u8> {
    built(|b| {
        b.constructed(Tag::VIPA_E6, |b| {
            b.primitive(Tag::VIPA_TRANSACTION_STATUS, &[0x0C]);
            b.primitive(Tag::VIPA_STATUS_MESSAGE, b"ENTER PIN");
            b.primitive(Tag::VIPA_PIN_DIGIT_COUNT, &[0x04]);
        });
    })
}

/// VIPA Reset Device response body: `9F1C`, `EE` device blocks and `EF` components.
fn vipa_reset() -> Vec<u8> {
    built(|b| {
        b.primitive(Tag::TERMINAL_IDENTIFICATION, b"12345678");
        for (name, serial) in [
            (&b"UX300"[..], &b"123-456-789"[..]),
            (b"UX100", b"987-654-321"),
        ] {
            b.constructed(Tag::VIPA_DEVICE_INFO, |b| {
                b.primitive(Tag::VIPA_NAME, name);
                b.primitive(Tag::IFD_SERIAL_NUMBER, serial);
                b.primitive(Tag::VIPA_VERSION, b"6.8.2.24");
            });
        }
        b.constructed(Tag::VIPA_SOFTWARE_COMPONENT, |b| {
            for (lib, ver) in [
                (&b"libvipa"[..], &b"6.8.2.24"[..]),
                (b"libemv", b"7.3.0.1"),
                (b"libctls", b"3.1.4.0"),
            ] {
                b.primitive(Tag::VIPA_LIB_NAME, lib);
                b.primitive(Tag::VIPA_LIB_VERSION, ver);
            }
        });
        b.constructed(Tag::VIPA_F0, |b| {
            b.primitive(Tag(0xDF8111), &[0x01]);
        });
    })
}

/// A large VIPA template nesting `FF7F` inside `FF7C` inside `E8`: three constructed levels
/// of private tags, and a length in `82 xxxx` form.
fn vipa_nested_ff7f() -> Vec<u8> {
    built(|b| {
        b.constructed(Tag::VIPA_E8, |b| {
            b.primitive(Tag::VIPA_DISPLAY_TEXT, b"REMOVE CARD");
            b.constructed(Tag::VIPA_TOKEN, |b| {
                b.primitive(Tag(0xDF837F), &filler(12, 32));
                b.constructed(Tag::VIPA_SRED, |b| {
                    b.primitive(Tag::VIPA_SRED_IV, &filler(13, 8));
                    b.primitive(Tag::VIPA_SRED_KSN, &unhex("FFFF98765432110010A6"));
                    b.primitive(Tag::VIPA_SRED_DATA, &filler(14, 320));
                });
                b.primitive(Tag(0xDF837E), &[0xE7, 0xC4, 0xD9]);
            });
            b.primitive(Tag(0xDFA218), &[0x00]);
        });
    })
}

/// The corpus: one of each message kind.
pub fn messages() -> Vec<Message> {
    let mut v = vec![
        Message {
            name: "fci_ppse",
            bytes: fci_ppse(),
        },
        Message {
            name: "fci_adf",
            bytes: fci_adf(),
        },
        Message {
            name: "gpo",
            bytes: gpo(),
        },
    ];
    for (name, bytes) in records() {
        v.push(Message { name, bytes });
    }
    v.extend([
        Message {
            name: "genac_format1",
            bytes: genac_format1(),
        },
        Message {
            name: "genac_format2",
            bytes: genac_format2(false),
        },
        Message {
            name: "genac_format2_cda",
            bytes: genac_format2(true),
        },
        Message {
            name: "vipa_e0_captured",
            bytes: unhex(CAPTURED_E0),
        },
        Message {
            name: "vipa_e2_captured",
            bytes: unhex(CAPTURED_E2),
        },
        Message {
            name: "vipa_e3",
            bytes: vipa_e3(),
        },
        Message {
            name: "vipa_e4",
            bytes: vipa_e4(),
        },
        Message {
            name: "vipa_e6",
            bytes: vipa_e6(),
        },
        Message {
            name: "vipa_reset",
            bytes: vipa_reset(),
        },
        Message {
            name: "vipa_e8_nested",
            bytes: vipa_nested_ff7f(),
        },
    ]);
    v
}

/// Whether a message holds [`NEEDLE`] as a data object.
fn holds_needle(m: &Message) -> bool {
    emvbridge_protocol::tlv::find(&m.bytes, NEEDLE).is_some()
}

/// The 64 KiB stream: messages concatenated in a fixed pseudo-random order.
///
/// Messages holding `9F26` are kept for the last sixteenth, so the first `9F26` lies deep
/// in the stream and `find` must walk most of it before finding it.
pub fn stream() -> Vec<u8> {
    let msgs = messages();
    let (with, without): (Vec<&Message>, Vec<&Message>) =
        msgs.iter().partition(|m| holds_needle(m));
    let mut out = Vec::with_capacity(STREAM_LEN);
    let mut x: u32 = 0x2545_F491;
    let mut next = |n: usize| {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (x >> 8) as usize % n
    };
    let head_budget = STREAM_LEN - STREAM_LEN / 16;
    loop {
        let m = without[next(without.len())];
        if out.len() + m.bytes.len() > head_budget {
            break;
        }
        out.extend_from_slice(&m.bytes);
    }
    // Fill the tail with the other messages, round robin, then top up with short ones.
    let mut i = 0;
    let mut misses = 0;
    while misses < with.len() + without.len() {
        let m = if i % 2 == 0 {
            with[(i / 2) % with.len()]
        } else {
            without[(i / 2) % without.len()]
        };
        i += 1;
        if out.len() + m.bytes.len() > STREAM_LEN {
            misses += 1;
            continue;
        }
        out.extend_from_slice(&m.bytes);
    }
    out
}

/// EMV-legal (or EMV-forbidden but BER-legal) inputs outside the common subset, each with
/// the verdict EMV Book 3 Annex B asks for (`true` = must parse).
pub fn edge_cases() -> Vec<(&'static str, Vec<u8>, bool)> {
    let e6 = vipa_e6();
    vec![
        (
            "00 padding between top-level objects (B3)",
            [&e6[..], &[0, 0, 0], &e6[..]].concat(),
            true,
        ),
        (
            "00 padding inside a template (B3)",
            unhex("E6 0A C3010C 0000 C5 01 04 0000"),
            true,
        ),
        (
            "trailing 00 padding after the last object (B3)",
            [&e6[..], &[0, 0]].concat(),
            true,
        ),
        ("4-byte tag DF818001", unhex("E1 06 DF818001 01 07"), true),
        (
            "non-minimal length 81 05",
            unhex("E6 08 C4 81 05 48454C4C4F"),
            true,
        ),
        (
            "3-byte length 83 00 00 03",
            unhex("E6 08 C1 83 000003 010203"),
            true,
        ),
        (
            "empty constructed E1 00",
            unhex("E1 00 E6 03 C3 01 0C"),
            true,
        ),
        (
            "indefinite length 80 (forbidden by B2)",
            unhex("E2 80 C1 01 00 00 00"),
            false,
        ),
        (
            "length 84 xxxxxxxx (beyond B2)",
            unhex("C1 84 00000001 00"),
            false,
        ),
        ("truncated value", unhex("E2 05 C1 01 00 C3"), false),
    ]
}

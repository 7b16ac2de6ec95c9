//! `emvbridge device …`: talk to a reader from the command line.
//!
//! `emvbridge device info --device PATH|tcp://HOST:PORT|tls://…|tcp-listen://… [--json]
//! [--baud N] [--flow-control rtscts|none]` (a TCP port may be left out: 16107).
//! opens the link (which resets the reader and reads its device information), prints it and
//! exits: 0 on success, 2 with `error: …` on standard error otherwise.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use emvbridge_protocol::vipa::{Device, DeviceInfo, LibVersion, RawField};
use serde::Serialize;

use super::link::{LinkConfig, LinkError, ReaderLink};
use super::transport::{AddrConnector, DeviceAddr, FlowControl, LineSettings, DEFAULT_BAUD};

/// Reader commands.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Reset the reader and print what it reports (model, serial, terminal id, software).
    Info(InfoArgs),
}

/// Arguments of `device info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The reader: a serial device (/dev/ttyUSB0, /dev/ttyACM0, /dev/pts/N), tcp://HOST:PORT,
    /// tls://HOST:PORT?ca=FILE, or tcp-listen://ADDR:PORT for a reader that connects out (the
    /// port may be left out: 16107).
    #[arg(long, env = "EMVBRIDGE_DEVICE")]
    pub device: DeviceAddr,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Serial speed (ignored for TCP and by USB CDC readers).
    #[arg(long, default_value_t = DEFAULT_BAUD)]
    pub baud: u32,
    /// Serial flow control: `rtscts` (the default, as Verifone's harness) or `none`.
    #[arg(long, default_value = "rtscts", value_name = "FLOW")]
    pub flow_control: String,
    /// RTS/CTS flow control (the default; kept for older scripts).
    #[arg(long, hide = true)]
    pub rtscts: bool,
    /// Seconds to wait for the reader to answer.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

/// Runs a `device` command.
pub async fn run(cmd: DeviceCommand) -> ExitCode {
    match cmd {
        DeviceCommand::Info(args) => run_info(&args).await,
    }
}

async fn run_info(args: &InfoArgs) -> ExitCode {
    match fetch_info(args).await {
        Ok(info) => {
            let out = if args.json {
                let j = InfoJson::new(&args.device, &info);
                serde_json::to_string_pretty(&j).unwrap_or_default()
            } else {
                render_text(&args.device, &info)
            };
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(msg) => fail(&msg),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

async fn fetch_info(args: &InfoArgs) -> Result<DeviceInfo, String> {
    let flow: FlowControl = args
        .flow_control
        .parse()
        .map_err(|e| format!("--flow-control: {e}"))?;
    let line = LineSettings {
        baud: args.baud,
        flow_control: if args.rtscts {
            FlowControl::RtsCts
        } else {
            flow
        },
        ..LineSettings::default()
    };
    let timeout = Duration::from_secs(args.timeout.max(1));
    let config = LinkConfig {
        reset_timeout: timeout,
        setup_timeout: timeout,
        // A one-shot command: a couple of quick retries (a pty just created, a busy port),
        // then report the error.
        max_connect_attempts: Some(3),
        ..LinkConfig::default()
    };
    let (link, events) = ReaderLink::spawn(AddrConnector::new(args.device.clone(), line), config);
    drop(events);
    let r = link.wait_ready(timeout).await;
    link.shutdown().await;
    match r {
        Ok(info) => Ok((*info).clone()),
        Err(LinkError::Timeout) => Err(format!(
            "no answer from reader at {} within {}s",
            args.device,
            timeout.as_secs()
        )),
        Err(LinkError::Lost(reason)) => Err(format!("reader at {}: {reason}", args.device)),
        Err(e) => Err(format!("reader at {}: {e}", args.device)),
    }
}

/// The JSON form: the headline fields, then everything the reader said.
#[derive(Debug, Serialize)]
struct InfoJson<'a> {
    device: String,
    /// `DF0D` of the first `EE` device.
    model: Option<&'a str>,
    /// `9F1E` of the first `EE` device.
    serial: Option<&'a str>,
    /// `9F1C`.
    terminal_id: Option<&'a str>,
    /// The `VIPA` library / component version, when reported.
    vipa_version: Option<&'a str>,
    components: Vec<ComponentJson<'a>>,
    devices: &'a [Device],
    other: &'a [RawField],
}

#[derive(Debug, Serialize)]
struct ComponentJson<'a> {
    name: Option<&'a str>,
    version: Option<&'a str>,
    libs: &'a [LibVersion],
    other: &'a [RawField],
}

impl<'a> InfoJson<'a> {
    fn new(addr: &DeviceAddr, info: &'a DeviceInfo) -> Self {
        let first = info.devices.first();
        InfoJson {
            device: addr.to_string(),
            model: first.and_then(|d| d.model.as_deref()),
            serial: first.and_then(|d| d.serial.as_deref()),
            terminal_id: info.terminal_id.as_deref(),
            vipa_version: info.component_version("VIPA"),
            components: info
                .components
                .iter()
                .map(|c| ComponentJson {
                    name: c.name.as_deref(),
                    version: c.version.as_deref(),
                    libs: &c.libs,
                    other: &c.other,
                })
                .collect(),
            devices: &info.devices,
            other: &info.other,
        }
    }
}

/// Device strings come from the wire: show control characters escaped, never raw.
fn clean(s: Option<&str>) -> String {
    match s {
        None => "-".to_owned(),
        Some("") => "\"\"".to_owned(),
        Some(s) => s
            .chars()
            .flat_map(|c| {
                if c.is_control() {
                    c.escape_default().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect(),
    }
}

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::from("  ");
        for (c, w) in cells.zip(&widths) {
            l.push_str(&format!("{c:<w$}  "));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
}

fn render_text(addr: &DeviceAddr, info: &DeviceInfo) -> String {
    let first = info.devices.first();
    let mut out = String::new();
    let mut kv = |k: &str, v: String| out.push_str(&format!("{k:<13}{v}\n"));
    kv("device", addr.to_string());
    kv("terminal id", clean(info.terminal_id.as_deref()));
    kv("model", clean(first.and_then(|d| d.model.as_deref())));
    kv("serial", clean(first.and_then(|d| d.serial.as_deref())));
    kv("vipa", clean(info.component_version("VIPA")));
    out.push_str("\ndevices\n");
    let rows: Vec<Vec<String>> = info
        .devices
        .iter()
        .map(|d| {
            vec![
                clean(d.model.as_deref()),
                clean(d.serial.as_deref()),
                clean(d.version.as_deref()),
            ]
        })
        .collect();
    table(&mut out, &["MODEL", "SERIAL", "VERSION"], &rows);
    out.push_str("\ncomponents\n");
    let mut rows = Vec::new();
    for c in &info.components {
        rows.push(vec![clean(c.name.as_deref()), clean(c.version.as_deref())]);
        for l in &c.libs {
            rows.push(vec![
                format!("  {}", clean(Some(&l.name))),
                clean(Some(&l.version)),
            ]);
        }
    }
    table(&mut out, &["NAME", "VERSION"], &rows);
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured_info() -> DeviceInfo {
        let path = format!(
            "{}/tests/data/vipa/reset-response-ux300-chained.hex",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut payload = Vec::new();
        for l in std::fs::read_to_string(path).unwrap().lines() {
            let f = hex::decode(l.trim()).unwrap();
            if f.len() > 4 {
                payload.extend_from_slice(&f[3..f.len() - 1]);
            }
        }
        emvbridge_protocol::vipa::parse_reset_response(&payload).unwrap()
    }

    #[test]
    fn json_has_the_headline_fields() {
        let info = captured_info();
        let addr: DeviceAddr = "/dev/pts/9".parse().unwrap();
        let v = serde_json::to_value(InfoJson::new(&addr, &info)).unwrap();
        assert_eq!(v["model"], "UX300");
        assert_eq!(v["serial"], "986227287");
        assert_eq!(v["terminal_id"], "32434278");
        assert_eq!(v["vipa_version"], "6.8.2.24");
        assert_eq!(v["devices"][1]["model"], "UX100");
        assert_eq!(v["components"][0]["name"], "RELEASE");
        assert_eq!(v["components"][0]["version"], "6.8.2.24");
        assert_eq!(
            v["components"].as_array().unwrap().len(),
            info.components.len()
        );
    }

    #[test]
    fn text_is_a_table_and_escapes_control_characters() {
        let info = captured_info();
        let addr: DeviceAddr = "tcp://127.0.0.1:9".parse().unwrap();
        let t = render_text(&addr, &info);
        assert!(t.contains("terminal id  32434278"), "{t}");
        assert!(t.contains("model        UX300"), "{t}");
        assert!(
            t.lines()
                .any(|l| l.contains("UX100") && l.contains("986109194")),
            "{t}"
        );
        assert!(
            t.lines()
                .any(|l| l.contains("VIPA") && l.contains("6.8.2.24")),
            "{t}"
        );
        assert_eq!(clean(Some("a\x1b[2Jb")), "a\\u{1b}[2Jb");
        assert_eq!(clean(None), "-");
    }
}

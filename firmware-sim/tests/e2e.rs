//! End-to-end: the built `vipa-sim` binary over a real pty (opened with `serialport`, as the
//! bridge opens a USB-serial reader) and over TCP, a full online chip sale byte by byte,
//! checked against vipa-protocol.md (§1 framing and LRC, §1.1 chaining, §2 SWs, §4 templates).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use emvbridge_protocol::frame::{emit_message, lrc, Deframer, Inbound, Message, NAD_PED};
use emvbridge_protocol::tlv::{self, Tag, TlvBuilder};
use emvbridge_protocol::vipa::{DeviceInfo, Response, StatusWord};
use emvbridge_sim::issuer;

/// The captured Start Transaction of §5.1 (32.50 USD purchase), LRC `BB`.
const START_CAPTURE: &str = "01003BDED1000036E0349C01009F02060000000032509F03060000000000009A032103039F21031957249F1A0208405F2A020840DFA2140101DFA2180100BB";
const WAIT: Duration = Duration::from_secs(10);

struct Sim {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Sim {
    fn spawn(args: &[&str]) -> Sim {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vipa-sim"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn vipa-sim");
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Sim {
            child,
            stdin,
            lines,
        }
    }

    fn line(&self) -> serde_json::Value {
        let l = self
            .lines
            .recv_timeout(WAIT)
            .expect("vipa-sim printed no line in time");
        serde_json::from_str(&l).unwrap_or_else(|_| panic!("not json: {l}"))
    }

    fn control(&mut self, cmd: &str) -> serde_json::Value {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{cmd}").unwrap();
        stdin.flush().unwrap();
        self.line()
    }

    /// Closes stdin and expects the process to exit by itself.
    fn close(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "vipa-sim exit status {status}");
                return;
            }
            assert!(Instant::now() < deadline, "vipa-sim did not exit on EOF");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A host link: raw bytes kept for frame checks, messages through the protocol deframer.
struct Link<L: Read + Write> {
    io: L,
    raw: Vec<u8>,
    deframer: Deframer,
    pending: std::collections::VecDeque<Message>,
}

impl<L: Read + Write> Link<L> {
    fn new(io: L) -> Self {
        Link {
            io,
            raw: Vec::new(),
            deframer: Deframer::new(),
            pending: Default::default(),
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).unwrap();
        self.io.flush().unwrap();
    }

    fn send(&mut self, payload: &[u8]) {
        let mut out = BytesMut::new();
        emit_message(NAD_PED, false, payload, &mut out).unwrap();
        self.send_raw(&out);
    }

    /// The next message (solicited or not), within [`WAIT`].
    fn message(&mut self) -> Message {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 1024];
        loop {
            if let Some(m) = self.pending.pop_front() {
                return m;
            }
            while let Some(item) = self.deframer.poll() {
                match item {
                    Inbound::Message(m) => self.pending.push_back(m),
                    Inbound::Corrupt { reason, .. } => panic!("corrupt frame: {reason}"),
                }
            }
            if !self.pending.is_empty() {
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "no message from vipa-sim in time"
            );
            match self.io.read(&mut buf) {
                Ok(0) => std::thread::sleep(Duration::from_millis(5)),
                Ok(n) => {
                    self.raw.extend_from_slice(&buf[..n]);
                    self.deframer.push(&buf[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                    ) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// The next response, skipping unsolicited messages (returned separately).
    fn response(&mut self, unsolicited: &mut Vec<Message>) -> Message {
        loop {
            let m = self.message();
            if m.unsolicited {
                unsolicited.push(m);
            } else {
                return m;
            }
        }
    }

    /// Every frame received so far: NAD 01, LEN 2..=254, LRC = XOR(NAD..INF) (§1).
    fn check_frames(&self) -> Vec<u8> {
        let mut rest = &self.raw[..];
        let mut pcbs = Vec::new();
        while !rest.is_empty() {
            assert!(rest.len() >= 6, "truncated frame");
            assert_eq!(rest[0], 0x01, "NAD");
            let len = usize::from(rest[2]);
            assert!((2..=254).contains(&len), "LEN {len}");
            let (f, tail) = rest.split_at(len + 4);
            assert_eq!(lrc(&f[..len + 3]), f[len + 3], "LRC");
            pcbs.push(f[1]);
            rest = tail;
        }
        pcbs
    }
}

fn sw(m: &Message) -> StatusWord {
    Response::parse(&m.payload).unwrap().sw()
}

fn template(m: &Message, t: u8) -> Vec<u8> {
    let r = Response::parse(&m.payload).unwrap();
    assert_eq!(r.sw(), StatusWord::SUCCESS);
    let first = tlv::parse(r.data()).next().unwrap().unwrap();
    assert_eq!(first.tag(), Tag(u32::from(t)), "template");
    first.value().to_vec()
}

fn tag(d: &[u8], t: u32) -> Option<Vec<u8>> {
    tlv::find(d, Tag(t)).map(|x| x.value().to_vec())
}

/// Reset → Card Status → Start (captured bytes) → E4 → Continue(E0{8A 00, 91}) → E3 (TC).
fn full_sale<L: Read + Write>(link: &mut Link<L>, expect_aid: &str) {
    let mut unsolicited = Vec::new();
    link.raw.clear();
    // Reset Device, no flags (§5.2): three chained frames, PCB 01 01 00, SW 9000.
    link.send_raw(&[0x01, 0x00, 0x04, 0xD0, 0x00, 0x00, 0x00, 0xD5]);
    let reset = link.response(&mut unsolicited);
    assert_eq!(reset.frames, 3);
    let info = DeviceInfo::parse(Response::parse(&reset.payload).unwrap().data()).unwrap();
    assert!(info.terminal_id.is_some());
    assert!(info.component_version("VIPA").is_some());
    let pcbs = link.check_frames();
    assert_eq!(&pcbs[pcbs.len() - 3..], &[0x01, 0x01, 0x00]);

    // Card Status (§5.2 frame, LRC B5): enable card events.
    link.send_raw(&[0x01, 0x00, 0x04, 0xD0, 0x60, 0x01, 0x01, 0xB5]);
    assert_eq!(sw(&link.response(&mut unsolicited)), StatusWord::SUCCESS);

    // The armed reader presents its --card by itself: the E0{48 0300} event
    // comes before the Start, as on the logged UX301.
    while !unsolicited
        .iter()
        .any(|m: &Message| m.payload.starts_with(&[0xE0, 0x04, 0x48, 0x02, 0x03]))
    {
        unsolicited.push(link.message());
    }
    // Start Transaction: the captured frame → E2 (card data), then the logged amount
    // confirmation with P1 bit 0 → E0 (after cardholder verification) → DE D2 01 00 → E4.
    link.send_raw(&hex::decode(START_CAPTURE).unwrap());
    let e2 = template(&link.response(&mut unsolicited), 0xE2);
    assert!(tag(&e2, 0x5A).is_some() && tag(&e2, 0x9F26).is_none());
    link.send(
        &hex::decode(
            "DED2010023E0219F02060000000032505F2A0208408901008A025A33C00100C2023635DFCC790101",
        )
        .unwrap(),
    );
    template(&link.response(&mut unsolicited), 0xE0);
    link.send(&[0xDE, 0xD2, 0x01, 0x00]);
    let e4m = link.response(&mut unsolicited);
    let e4 = template(&e4m, 0xE4);
    assert_eq!(tag(&e4, 0x9F27), Some(vec![0x80]), "ARQC");
    assert_eq!(tag(&e4, 0x9F26).map(|v| v.len()), Some(8));
    assert_eq!(tag(&e4, 0x9F02), Some(vec![0, 0, 0, 0, 0x32, 0x50]));
    assert_eq!(
        tag(&e4, 0x4F).map(hex::encode_upper).as_deref(),
        Some(expect_aid)
    );

    // The issuer verifies the ARQC and answers; Continue wrapped in E0.
    let v = issuer::verify_arqc(&e4).expect("ARQC verifies");
    let mut b = TlvBuilder::new();
    b.constructed(Tag::VIPA_E0, |b| {
        b.primitive(Tag::AUTHORISATION_RESPONSE_CODE, b"00");
        // The host's decision: ask the card for a TC (§0).
        b.primitive(Tag(0xC0), &[0x01]);
        b.primitive(
            Tag::ISSUER_AUTHENTICATION_DATA,
            &v.issuer_auth_data(*b"00", false),
        );
    });
    let mut cont = vec![0xDE, 0xD2, 0x00, 0x00, b.len() as u8];
    cont.extend_from_slice(b.as_bytes());
    link.send(&cont);
    let e3 = template(&link.response(&mut unsolicited), 0xE3);
    assert_eq!(tag(&e3, 0x9F27), Some(vec![0x40]), "TC");
    assert_eq!(tag(&e3, 0x8A), Some(b"00".to_vec()));
    // Auto-remove: the removal event follows.
    let removed = link.message();
    assert!(removed.unsolicited);
    assert_eq!(
        &removed.payload[..],
        &[0xE0, 0x04, 0x48, 0x02, 0x00, 0x00, 0x90, 0x00]
    );
    for pcb in link.check_frames() {
        assert!([0x00, 0x01, 0x40].contains(&pcb), "PCB {pcb:02X}");
    }
}

#[test]
fn pty_full_online_sale() {
    let mut sim = Sim::spawn(&["--pty", "--card", "visa-cvn18"]);
    let first = sim.line();
    let path = first["pty"]
        .as_str()
        .expect("{\"pty\":...} first")
        .to_owned();
    assert!(path.starts_with("/dev/"));
    let port = serialport::new(&path, 57600)
        .timeout(Duration::from_millis(100))
        .open()
        .expect("open the pty like a serial port");
    let mut link = Link::new(port);
    // The power-on E6 (PCB 40) was written before we opened the port.
    let e6 = link.message();
    assert!(e6.unsolicited);
    assert_eq!(e6.payload[0], 0xE6);
    full_sale(&mut link, "A0000000031010");

    // The bridge closes and reopens the port: the device keeps working.
    drop(link);
    let port = serialport::new(&path, 57600)
        .timeout(Duration::from_millis(100))
        .open()
        .expect("reopen");
    let mut link = Link::new(port);
    // Switch cards between sales through the control channel.
    let ack = sim.control(r#"{"cmd":"card","profile":"mc-cvn16"}"#);
    assert_eq!(ack["ok"], true, "{ack}");
    full_sale(&mut link, "A0000000041010");
    let ack = sim.control(r#"{"cmd":"card","profile":"no-such-card"}"#);
    assert_eq!(ack["ok"], false);
    drop(link);
    sim.close();
}

#[test]
fn tcp_full_online_sale_and_many_devices() {
    let mut sim = Sim::spawn(&[
        "--tcp",
        "127.0.0.1:0",
        "--devices",
        "2",
        "--card",
        "visa-cvn18",
    ]);
    let addrs: Vec<String> = (0..2)
        .map(|_| sim.line()["tcp"].as_str().expect("tcp line").to_owned())
        .collect();
    assert_ne!(addrs[0], addrs[1]);
    for (i, addr) in addrs.iter().enumerate() {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut link = Link::new(stream);
        // §1.4: after connecting, the host first reads the E6 power-on notification.
        let e6 = link.message();
        assert!(e6.unsolicited && e6.payload[0] == 0xE6);
        let tid = tlv::find(&e6.payload, Tag(0x9F1C))
            .unwrap()
            .value()
            .to_vec();
        assert_eq!(tid, format!("SIM0000{}", i + 1).into_bytes());
        full_sale(&mut link, "A0000000031010");
    }
    let ack = sim.control(r#"{"cmd":"status","device":1}"#);
    assert_eq!(ack["ok"], true);
    assert_eq!(ack["device"], 1);
    sim.close();
}

#[test]
fn tcp_sale_survives_split_and_slow_writes() {
    let sim = Sim::spawn(&[
        "--tcp",
        "127.0.0.1:0",
        "--card",
        "visa-cvn18",
        "--seed",
        "3",
        "--faults",
        "split,slow=20ms",
    ]);
    let addr = sim.line()["tcp"].as_str().unwrap().to_owned();
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut link = Link::new(stream);
    assert_eq!(link.message().payload[0], 0xE6);
    full_sale(&mut link, "A0000000031010");
    sim.close();
}

#[test]
fn corrupt_lrc_faults_reach_the_host() {
    let mut sim = Sim::spawn(&["--tcp", "127.0.0.1:0", "--faults", "corrupt-lrc=1"]);
    let addr = sim.line()["tcp"].as_str().unwrap().to_owned();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    stream
        .write_all(&[0x01, 0x00, 0x04, 0xD0, 0xFF, 0x00, 0x00, 0x2A])
        .unwrap();
    let mut raw = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 256];
    // E6 on connect (35 + 4 bytes) and the Abort's 9000 (6 bytes), both with a bad LRC.
    while raw.len() < 45 {
        assert!(Instant::now() < deadline, "no bytes from vipa-sim");
        if let Ok(n) = stream.read(&mut buf) {
            raw.extend_from_slice(&buf[..n]);
        }
    }
    let mut d = Deframer::new();
    d.push(&raw);
    let mut corrupt = 0;
    while let Some(item) = d.poll() {
        match item {
            Inbound::Corrupt { .. } => corrupt += 1,
            Inbound::Message(_) => panic!("a frame survived corrupt-lrc=1"),
        }
    }
    assert!(corrupt >= 1);
    // A fault plan can be changed at run time through the control channel.
    let ack = sim.control(r#"{"cmd":"faults","spec":"bogus"}"#);
    assert_eq!(ack["ok"], false);
    let ack = sim.control(r#"{"cmd":"faults","spec":""}"#);
    assert_eq!(ack["ok"], true);
    sim.close();
}

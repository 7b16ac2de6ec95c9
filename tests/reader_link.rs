//! The reader link over real transports: a TCP socket, a real pseudo-terminal (opened by the
//! link through tokio-serial, like a USB-CDC reader) and the in-process simulator.
//!
//! The fake reader in this file answers from the captured UX300 Reset response
//! (`tests/data/vipa/reset-response-ux300-chained.hex`, three chained frames) and can
//! misbehave on cue: corrupt frames, stalled partial frames, unsolicited messages, silence,
//! closing the connection. Every wait is bounded so a stall fails loudly.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use emvbridge::driver::{
    AddrConnector, Connector, DeviceAddr, FnConnector, LineSettings, LinkConfig, LinkError,
    LinkEvent, LinkState, LostReason, Reader, ReaderLink,
};
use emvbridge_protocol::frame::{emit_message, Deframer, Inbound, NAD_PED};
use emvbridge_protocol::vipa::{Command, StatusWord};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const BOUND: Duration = Duration::from_secs(10);

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn captured_reset_wire() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/vipa/reset-response-ux300-chained.hex"
    );
    let text = std::fs::read_to_string(path).expect("captured reset response");
    let frames: Vec<Vec<u8>> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| hex::decode(l.trim()).expect("hex"))
        .collect();
    assert_eq!(frames.len(), 3, "three chained frames");
    frames.concat()
}

fn frame(payload: &[u8], unsolicited: bool) -> Vec<u8> {
    let mut out = BytesMut::new();
    emit_message(NAD_PED, unsolicited, payload, &mut out).expect("frameable");
    out.to_vec()
}

/// What the fake does with a command other than Reset / Card Status.
#[derive(Debug, Clone)]
enum Act {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Write these bytes, wait, then write those.
    SendPause(Vec<u8>, Duration, Vec<u8>),
    /// Close the connection.
    Close,
    /// Say nothing.
    Ignore,
}

/// A fake reader on one stream: Reset → the captured chained response, Card Status → 9000,
/// anything else → `act(CLA INS)`. Returns when the peer closes or `Act::Close`.
async fn fake_reader<S, F>(mut io: S, resets: Arc<AtomicUsize>, mut act: F)
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut([u8; 2]) -> Act,
{
    let reset = captured_reset_wire();
    let mut d = Deframer::new();
    let mut buf = [0u8; 1024];
    loop {
        let payload = loop {
            match d.poll() {
                Some(Inbound::Message(m)) => break m.payload,
                Some(Inbound::Corrupt { .. }) => continue,
                None => {}
            }
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => d.push(&buf[..n]),
            }
        };
        let code = [payload[0], payload[1]];
        let act = match code {
            [0xD0, 0x00] => {
                resets.fetch_add(1, Ordering::SeqCst);
                Act::Send(reset.clone())
            }
            [0xD0, 0x60] => Act::Send(frame(&[0x90, 0x00], false)),
            c => act(c),
        };
        let ok = match act {
            Act::Send(b) => io.write_all(&b).await.is_ok(),
            Act::SendPause(a, pause, b) => {
                let r = io.write_all(&a).await.is_ok();
                tokio::time::sleep(pause).await;
                r && io.write_all(&b).await.is_ok()
            }
            Act::Close => return,
            Act::Ignore => true,
        };
        if !ok {
            return;
        }
    }
}

/// A TCP fake that serves connections one after another until the listener is dropped.
async fn spawn_tcp_fake<F>(act: F) -> (DeviceAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>)
where
    F: FnMut([u8; 2]) -> Act + Clone + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let resets = Arc::new(AtomicUsize::new(0));
    let r = resets.clone();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            fake_reader(s, r.clone(), act.clone()).await;
        }
    });
    let addr = DeviceAddr::Tcp {
        host: "127.0.0.1".into(),
        port,
    };
    (addr, resets, task)
}

fn fast_config() -> LinkConfig {
    LinkConfig {
        reset_timeout: Duration::from_secs(3),
        setup_timeout: Duration::from_secs(3),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..LinkConfig::default()
    }
}

fn spawn_link(c: impl Connector) -> (ReaderLink, mpsc::Receiver<LinkEvent>) {
    ReaderLink::spawn(c, fast_config())
}

async fn next_event(
    events: &mut mpsc::Receiver<LinkEvent>,
    mut pick: impl FnMut(&LinkEvent) -> bool,
) -> LinkEvent {
    bounded("link event", async {
        loop {
            let ev = events.recv().await.expect("event channel open");
            if pick(&ev) {
                return ev;
            }
        }
    })
    .await
}

fn assert_captured_info(info: &emvbridge_protocol::vipa::DeviceInfo) {
    assert_eq!(info.terminal_id.as_deref(), Some("32434278"));
    let models: Vec<_> = info.devices.iter().map(|d| d.model.as_deref()).collect();
    assert_eq!(models, [Some("UX300"), Some("UX100")]);
    assert_eq!(info.component_version("VIPA"), Some("6.8.2.24"));
}

#[tokio::test]
async fn tcp_reset_gives_device_info_from_three_chained_frames() {
    let (addr, resets, _fake) = spawn_tcp_fake(|_| Act::Send(frame(&[0x90, 0x00], false))).await;
    let (link, mut events) = spawn_link(AddrConnector::new(addr, LineSettings::default()));
    let info = bounded("ready", link.wait_ready(BOUND)).await.unwrap();
    assert_captured_info(&info);
    assert!(matches!(
        next_event(&mut events, |e| matches!(e, LinkEvent::Ready(_))).await,
        LinkEvent::Ready(i) if i == info
    ));
    assert!(matches!(link.state(), LinkState::Connected { .. }));
    // The Reader helper: a second reset, a display.
    let reader = Reader::new(link.clone()).with_timeout(Duration::from_secs(2));
    assert_captured_info(&reader.reset().await.unwrap());
    reader.display("HELLO").await.unwrap();
    let s = link.stats();
    assert_eq!(resets.load(Ordering::SeqCst), 2);
    // Reset (3 frames) twice, Card Status, Display.
    assert_eq!((s.messages_in, s.frames_in), (4, 8), "{s:?}");
    assert_eq!(
        (s.messages_out, s.corrupt, s.reconnects),
        (4, 0, 0),
        "{s:?}"
    );
}

#[tokio::test]
async fn pty_reset_gives_device_info() {
    // A real pseudo-terminal: the fake holds the master, the link opens /dev/pts/N with
    // tokio-serial at the default 57600 8N1.
    let pty = emvbridge_sim::transport::Pty::open().expect("pty");
    let path = pty.path().to_string_lossy().into_owned();
    let resets = Arc::new(AtomicUsize::new(0));
    tokio::spawn(fake_reader(pty, resets.clone(), |_| {
        Act::Send(frame(&[0x90, 0x00], false))
    }));
    let addr: DeviceAddr = path.parse().unwrap();
    let (link, _events) = spawn_link(AddrConnector::new(addr, LineSettings::default()));
    let info = bounded("ready", link.wait_ready(BOUND)).await.unwrap();
    assert_captured_info(&info);
    Reader::new(link.clone())
        .display_message(0x0D)
        .await
        .unwrap();
    assert_eq!(resets.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn corruption_is_counted_and_the_good_response_still_arrives() {
    let ok = frame(&[0x90, 0x00], false);
    let mut bad_lrc = ok.clone();
    *bad_lrc.last_mut().unwrap() ^= 0xFF;
    let event = frame(&[0xE6, 0x03, 0xC3, 0x01, 0x0C, 0x90, 0x00], true);
    let seq = Arc::new(AtomicUsize::new(0));
    let (addr, _resets, _fake) = spawn_tcp_fake(move |_| {
        match seq.fetch_add(1, Ordering::SeqCst) {
            // A bad-LRC frame, an unsolicited E6, then the good answer.
            0 => Act::Send([bad_lrc.clone(), event.clone(), ok.clone()].concat()),
            // A stalled partial frame, then (after the idle gap) the good answer.
            _ => Act::SendPause(
                vec![0x01, 0x00, 0x09, 0xE3],
                Duration::from_millis(600),
                ok.clone(),
            ),
        }
    })
    .await;
    let (link, mut events) = spawn_link(AddrConnector::new(addr, LineSettings::default()));
    bounded("ready", link.wait_ready(BOUND)).await.unwrap();
    let reader = Reader::new(link.clone()).with_timeout(Duration::from_secs(3));
    reader.display("ONE").await.unwrap();
    assert!(matches!(
        next_event(&mut events, |e| matches!(e, LinkEvent::Corrupt(_))).await,
        LinkEvent::Corrupt(emvbridge_protocol::frame::FrameError::BadLrc { .. })
    ));
    let LinkEvent::Unsolicited(p) =
        next_event(&mut events, |e| matches!(e, LinkEvent::Unsolicited(_))).await
    else {
        unreachable!()
    };
    assert_eq!(&p[..], &[0xE6, 0x03, 0xC3, 0x01, 0x0C, 0x90, 0x00]);
    reader.display("TWO").await.unwrap();
    assert!(matches!(
        next_event(&mut events, |e| matches!(e, LinkEvent::Corrupt(_))).await,
        LinkEvent::Corrupt(emvbridge_protocol::frame::FrameError::Truncated { .. })
    ));
    let s = link.stats();
    assert_eq!((s.corrupt, s.unsolicited, s.timeouts), (2, 1, 0), "{s:?}");
    assert!(matches!(link.state(), LinkState::Connected { .. }));
}

#[tokio::test]
async fn peer_closing_mid_command_is_lost_quickly_and_the_link_comes_back() {
    let closes = Arc::new(AtomicUsize::new(0));
    let c = closes.clone();
    let (addr, resets, _fake) = spawn_tcp_fake(move |_| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            Act::Close
        } else {
            Act::Send(frame(&[0x90, 0x00], false))
        }
    })
    .await;
    let (link, mut events) = spawn_link(AddrConnector::new(addr, LineSettings::default()));
    bounded("ready", link.wait_ready(BOUND)).await.unwrap();
    let reader = Reader::new(link.clone()).with_timeout(Duration::from_secs(30));
    let t = std::time::Instant::now();
    let err = reader.display("BYE").await.unwrap_err();
    assert!(
        matches!(
            err,
            emvbridge::driver::ReaderError::Link(LinkError::Lost(
                LostReason::Eof | LostReason::Io(_)
            ))
        ),
        "{err:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(matches!(
        next_event(&mut events, |e| matches!(e, LinkEvent::Lost(_))).await,
        LinkEvent::Lost(LostReason::Eof | LostReason::Io(_))
    ));
    // The fake accepts again: the link reconnects and re-synchronises (a second reset).
    next_event(&mut events, |e| matches!(e, LinkEvent::Ready(_))).await;
    reader.display("AGAIN").await.unwrap();
    assert_eq!(resets.load(Ordering::SeqCst), 2);
    assert_eq!(link.stats().reconnects, 1);
}

#[tokio::test]
async fn silent_reader_times_out_and_is_resynchronised() {
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    let (addr, resets, _fake) = spawn_tcp_fake(move |_| {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            Act::Ignore
        } else {
            Act::Send(frame(&[0x90, 0x00], false))
        }
    })
    .await;
    let (link, mut events) = spawn_link(AddrConnector::new(addr, LineSettings::default()));
    bounded("ready", link.wait_ready(BOUND)).await.unwrap();
    let reader = Reader::new(link.clone()).with_timeout(Duration::from_millis(300));
    let err = bounded("timeout", reader.display("?")).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(matches!(
        next_event(&mut events, |e| matches!(e, LinkEvent::Lost(_))).await,
        LinkEvent::Lost(LostReason::NoAnswer)
    ));
    bounded("ready again", link.wait_ready(BOUND))
        .await
        .unwrap();
    next_event(&mut events, |e| matches!(e, LinkEvent::Ready(_))).await;
    reader.display("!").await.unwrap();
    assert_eq!(resets.load(Ordering::SeqCst), 2);
    assert_eq!(link.stats().timeouts, 1);
}

#[tokio::test]
async fn one_command_in_flight_and_abort_cancels_it() {
    // Start Transaction waits for a card; Abort makes it answer 9F41, then the Abort 9000.
    let (addr, _resets, _fake) = spawn_tcp_fake(|code| match code {
        [0xDE, 0xD1] => Act::Ignore,
        [0xD0, 0xFF] => {
            Act::Send([frame(&[0x9F, 0x41], false), frame(&[0x90, 0x00], false)].concat())
        }
        _ => Act::Send(frame(&[0x90, 0x00], false)),
    })
    .await;
    let (link, mut events) = spawn_link(AddrConnector::new(addr, LineSettings::default()));
    bounded("ready", link.wait_ready(BOUND)).await.unwrap();
    let start = Command::Raw {
        cla: 0xDE,
        ins: 0xD1,
        p1: 0,
        p2: 0,
        data: &[0xE0, 0x00],
        le: None,
    };
    link.send(start.to_payload().unwrap(), Duration::from_secs(30))
        .await
        .unwrap();
    let reader = Reader::new(link.clone()).with_timeout(Duration::from_secs(3));
    assert_eq!(
        reader.display("X").await,
        Err(emvbridge::driver::ReaderError::Link(LinkError::Busy))
    );
    assert_eq!(reader.abort().await, Ok(StatusWord::SUCCESS));
    let LinkEvent::Response { command, payload } =
        next_event(&mut events, |e| matches!(e, LinkEvent::Response { .. })).await
    else {
        unreachable!()
    };
    assert_eq!((command, &payload[..]), ([0xDE, 0xD1], &[0x9F, 0x41][..]));
    // Nothing pending any more.
    reader.display("IDLE").await.unwrap();
    // Payloads that cannot be framed are refused without touching the line.
    assert!(matches!(
        link.send(Bytes::from_static(&[0xD0]), Duration::from_secs(1))
            .await,
        Err(LinkError::Frame(_))
    ));
}

#[tokio::test]
async fn nothing_to_open_gives_up_with_the_open_error() {
    let (link, _events) = ReaderLink::spawn(
        AddrConnector::new(
            "/dev/emvbridge-no-such-reader".parse().unwrap(),
            LineSettings::default(),
        ),
        LinkConfig {
            max_connect_attempts: Some(2),
            ..fast_config()
        },
    );
    let err = bounded("give up", link.wait_ready(BOUND))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LinkError::Lost(LostReason::Open(_))),
        "{err:?}"
    );
    assert!(matches!(link.state(), LinkState::Closed { .. }));
    assert_eq!(
        link.send(Bytes::from_static(&[0xD0, 0x60, 1, 1]), BOUND)
            .await,
        Err(LinkError::Closed)
    );
    assert_eq!(link.stats().connect_failures, 2);
}

#[tokio::test]
async fn against_the_simulator_core_in_process() {
    use emvbridge_sim::reader::{SimConfig, SimReader};
    let handles = Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = handles.clone();
    let connector = FnConnector::new("sim-duplex", move || {
        let reader = SimReader::new(SimConfig::default(), std::time::Instant::now());
        let (io, handle, _task) = emvbridge_sim::transport::spawn_duplex(reader);
        h.lock().unwrap().push(handle);
        Box::pin(async move { Ok(Box::new(io) as emvbridge::driver::BoxedIo) })
    });
    let (link, _events) = spawn_link(connector);
    let info = bounded("ready", link.wait_ready(BOUND)).await.unwrap();
    assert!(info.terminal_id.is_some(), "{info:?}");
    assert!(!info.devices.is_empty(), "{info:?}");
    let reader = Reader::new(link.clone()).with_timeout(Duration::from_secs(3));
    reader.display("SIM").await.unwrap();
    assert_eq!(reader.abort().await, Ok(StatusWord::SUCCESS));
    assert_eq!(handles.lock().unwrap().len(), 1);
}

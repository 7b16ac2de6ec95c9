//! Where the reader is and how to open it: [`DeviceAddr`] (a serial path or `tcp://HOST:PORT`),
//! [`LineSettings`] for serial lines, and [`Connector`], the one seam the link uses to (re)open
//! its byte stream, so tests can plug in an in-process transport.
//!
//! VIPA uses the same frames over serial and TCP, with no extra length prefix
//! (vipa-protocol.md §1.4), so both are just an async byte stream here. As Verifone's harness
//! settles it (§0): serial lines use RTS/CTS flow control by default, TCP uses port 16107 by
//! default, optionally under TLS, and the host may be the client or the server (the reader
//! connects out: `tcp-listen://`).

pub use super::tls::ClientCert;
use core::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

/// Default baud rate: the \[S2\] host default (§1.3). USB CDC-ACM readers ignore it \[I\].
pub const DEFAULT_BAUD: u32 = 57_600;

/// Bound on opening a port or connecting a socket, so a dead host cannot stall a reconnect.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a listening bridge waits for the reader to connect before the attempt counts as
/// failed (the link then backs off and listens again).
pub const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);

/// VIPA's TCP port when the address names none (§0: the harness's default, 16107).
pub const DEFAULT_TCP_PORT: u16 = 16107;

/// A reader address, parsed from the CLI:
/// - a serial device path (`/dev/ttyUSB0`, `/dev/ttyACM0`, a pty such as `/dev/pts/3`;
///   `serial://PATH` also works), RTS/CTS flow control unless `?flow=none` follows the path;
/// - `tcp://HOST[:PORT]`: the reader is the TCP server (port 16107 by default);
/// - `tls://HOST[:PORT]?ca=FILE`: the same under TLS, the reader's certificate checked
///   against the PEM certificates in `FILE`; `&cert=FILE&key=FILE` adds the bridge's own
///   certificate chain and private key (PEM) for a reader or site that asks for one;
/// - `tcp-listen://ADDR[:PORT]`: the bridge listens and the reader connects to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeviceAddr {
    /// A serial port (RS-232 adapter, USB CDC-ACM or a pty), possibly followed by
    /// `?flow=none|rtscts`.
    Serial(String),
    /// A TCP server on the terminal (§1.4).
    Tcp {
        /// Host name or IP literal (IPv6 without brackets).
        host: String,
        /// Port (16107 when the address names none).
        port: u16,
    },
    /// A TLS server on the terminal (§0: TLS is optional on TCP).
    Tls {
        /// Host name (checked against the certificate) or IP literal.
        host: String,
        /// Port (16107 when the address names none).
        port: u16,
        /// PEM file of the certificates to trust (the reader's own or its CA).
        ca: String,
        /// The bridge's own certificate, when the reader asks for one.
        client: Option<ClientCert>,
    },
    /// The bridge listens here; the reader connects out to it (§0).
    TcpListen {
        /// Local address to bind (IPv6 without brackets).
        host: String,
        /// Port (16107 when the address names none).
        port: u16,
    },
}

/// Why a device address does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// Nothing given.
    #[error("empty device address")]
    Empty,
    /// `tcp://` without a host.
    #[error("tcp address needs host[:port]")]
    MissingPort,
    /// `tls://` without `?ca=FILE`.
    #[error("tls address needs ?ca=FILE (PEM certificates to trust)")]
    MissingCa,
    /// `cert=` without `key=`, or the other way round.
    #[error("tls client certificate needs both cert=FILE and key=FILE")]
    HalfClientCert,
    /// An option after `?` that is not known here.
    #[error("unknown address option {0:?}")]
    BadOption(String),
    /// A port that is not 1..=65535.
    #[error("bad tcp port {0:?}")]
    BadPort(String),
    /// A scheme other than `tcp://`, `tls://`, `tcp-listen://` or `serial://`.
    #[error("unknown address scheme {0:?} (use tcp://host[:port], tls://, tcp-listen:// or a device path)")]
    UnknownScheme(String),
}

/// `HOST[:PORT]` (IPv6 in brackets), the port 16107 when absent.
fn host_port(rest: &str) -> Result<(String, u16), AddrError> {
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        // A bare IPv6 literal in brackets, or a host with a port.
        Some((h, p)) if !p.contains(']') && (!h.contains(':') || h.ends_with(']')) => (h, Some(p)),
        _ => (rest, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(AddrError::MissingPort);
    }
    let port = match port {
        None => DEFAULT_TCP_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| AddrError::BadPort(p.to_owned()))?,
    };
    Ok((host.to_owned(), port))
}

/// Splits `?key=value` options off an address.
fn options(s: &str) -> (&str, Vec<(&str, &str)>) {
    match s.split_once('?') {
        Some((head, q)) => (
            head,
            q.split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
                .collect(),
        ),
        None => (s, Vec::new()),
    }
}

impl FromStr for DeviceAddr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, AddrError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(AddrError::Empty);
        }
        let (head, opts) = options(s);
        let only = |allowed: &[&str]| {
            opts.iter()
                .find(|(k, _)| !allowed.contains(k))
                .map_or(Ok(()), |(k, _)| Err(AddrError::BadOption((*k).to_owned())))
        };
        if let Some(rest) = head.strip_prefix("tcp://") {
            only(&[])?;
            let (host, port) = host_port(rest)?;
            return Ok(DeviceAddr::Tcp { host, port });
        }
        if let Some(rest) = head.strip_prefix("tcp-listen://") {
            only(&[])?;
            let (host, port) = host_port(rest)?;
            return Ok(DeviceAddr::TcpListen { host, port });
        }
        if let Some(rest) = head.strip_prefix("tls://") {
            only(&["ca", "cert", "key"])?;
            let (host, port) = host_port(rest)?;
            let opt = |name: &str| {
                opts.iter()
                    .find(|(k, v)| *k == name && !v.is_empty())
                    .map(|(_, v)| (*v).to_owned())
            };
            let ca = opt("ca").ok_or(AddrError::MissingCa)?;
            let client = match (opt("cert"), opt("key")) {
                (Some(cert), Some(key)) => Some(ClientCert { cert, key }),
                (None, None) => None,
                _ => return Err(AddrError::HalfClientCert),
            };
            return Ok(DeviceAddr::Tls {
                host,
                port,
                ca,
                client,
            });
        }
        let path = match head.strip_prefix("serial://") {
            Some(path) => path,
            None => {
                if let Some((scheme, _)) = head.split_once("://") {
                    return Err(AddrError::UnknownScheme(scheme.to_owned()));
                }
                head
            }
        };
        if path.is_empty() {
            return Err(AddrError::Empty);
        }
        only(&["flow"])?;
        for (_, v) in &opts {
            v.parse::<FlowControl>()?;
        }
        Ok(DeviceAddr::Serial(match s.split_once('?') {
            Some((_, q)) => format!("{path}?{q}"),
            None => path.to_owned(),
        }))
    }
}

impl DeviceAddr {
    /// A serial path without its options, and the flow control they ask for (if any).
    fn serial_parts(path: &str) -> (&str, Option<FlowControl>) {
        let (head, opts) = options(path);
        let flow = opts
            .iter()
            .find(|(k, _)| *k == "flow")
            .and_then(|(_, v)| v.parse().ok());
        (head, flow)
    }
}

impl fmt::Display for DeviceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hp = |f: &mut fmt::Formatter<'_>, scheme: &str, host: &str, port: u16| {
            if host.contains(':') {
                write!(f, "{scheme}://[{host}]:{port}")
            } else {
                write!(f, "{scheme}://{host}:{port}")
            }
        };
        match self {
            DeviceAddr::Serial(p) => f.write_str(p),
            DeviceAddr::Tcp { host, port } => hp(f, "tcp", host, *port),
            DeviceAddr::TcpListen { host, port } => hp(f, "tcp-listen", host, *port),
            DeviceAddr::Tls {
                host,
                port,
                ca,
                client,
            } => {
                hp(f, "tls", host, *port)?;
                write!(f, "?ca={ca}")?;
                match client {
                    Some(c) => write!(f, "&cert={}&key={}", c.cert, c.key),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Hardware flow control on a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlowControl {
    /// None: for cables that do not wire RTS/CTS.
    None,
    /// RTS/CTS: the default of Verifone's own harness (§0) and of the \[S2\] host (§1.3).
    /// USB CDC-ACM readers and ptys ignore it.
    #[default]
    RtsCts,
}

impl FromStr for FlowControl {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<Self, AddrError> {
        match s {
            "none" | "off" => Ok(FlowControl::None),
            "rtscts" | "hardware" => Ok(FlowControl::RtsCts),
            other => Err(AddrError::BadOption(format!("flow={other}"))),
        }
    }
}

/// Parity of a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parity {
    /// No parity (default, 8N1).
    #[default]
    None,
    /// Even.
    Even,
    /// Odd.
    Odd,
}

/// Serial line settings. Default 57600 8N1 with RTS/CTS flow control, as Verifone's harness
/// (§0) and the \[S2\] host (§1.3) default; `?flow=none` after the device path turns it off.
/// Ignored for TCP; USB CDC-ACM devices ignore them as well \[I\].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineSettings {
    /// Bits per second.
    pub baud: u32,
    /// Data bits, 5..=8.
    pub data_bits: u8,
    /// Parity.
    pub parity: Parity,
    /// Stop bits, 1 or 2.
    pub stop_bits: u8,
    /// Flow control.
    pub flow_control: FlowControl,
}

impl Default for LineSettings {
    fn default() -> Self {
        LineSettings {
            baud: DEFAULT_BAUD,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
            flow_control: FlowControl::RtsCts,
        }
    }
}

/// A byte stream to the reader.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// An opened transport.
pub type BoxedIo = Box<dyn Io>;

/// The future a [`Connector`] returns.
pub type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<BoxedIo>> + Send>>;

/// Opens (and, after a loss, re-opens) the byte stream to the reader.
pub trait Connector: Send + 'static {
    /// Opens a fresh transport.
    fn connect(&mut self) -> ConnectFuture;
    /// What is being opened, for logs and errors.
    fn describe(&self) -> String;
}

/// The [`Connector`] for a [`DeviceAddr`]: a serial port via `tokio-serial` (built without
/// libudev), a TCP connection (TLS when asked), or a listening socket the reader connects to.
#[derive(Debug, Clone)]
pub struct AddrConnector {
    /// Where.
    pub addr: DeviceAddr,
    /// Line settings (serial only).
    pub line: LineSettings,
    /// The bound listener of a `tcp-listen://` address, kept across reconnects.
    listener: std::sync::Arc<tokio::sync::Mutex<Option<tokio::net::TcpListener>>>,
}

impl AddrConnector {
    /// A connector for `addr` with `line` settings (a `?flow=` option on a serial path wins
    /// over `line.flow_control`).
    pub fn new(addr: DeviceAddr, line: LineSettings) -> Self {
        let mut line = line;
        if let DeviceAddr::Serial(p) = &addr {
            if let (_, Some(flow)) = DeviceAddr::serial_parts(p) {
                line.flow_control = flow;
            }
        }
        AddrConnector {
            addr,
            line,
            listener: Default::default(),
        }
    }
}

impl Connector for AddrConnector {
    fn connect(&mut self) -> ConnectFuture {
        let addr = self.addr.clone();
        let line = self.line;
        let listener = self.listener.clone();
        Box::pin(async move {
            let open = async {
                match &addr {
                    DeviceAddr::Serial(path) => {
                        open_serial(DeviceAddr::serial_parts(path).0, &line)
                    }
                    DeviceAddr::Tcp { host, port } => {
                        let s = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                        // Frames are small and latency matters more than batching.
                        s.set_nodelay(true)?;
                        Ok(Box::new(s) as BoxedIo)
                    }
                    DeviceAddr::Tls {
                        host,
                        port,
                        ca,
                        client,
                    } => Ok(
                        Box::new(super::tls::connect(host, *port, ca, client.as_ref()).await?)
                            as BoxedIo,
                    ),
                    DeviceAddr::TcpListen { host, port } => {
                        let mut slot = listener.lock().await;
                        if slot.is_none() {
                            *slot =
                                Some(tokio::net::TcpListener::bind((host.as_str(), *port)).await?);
                        }
                        let Some(l) = slot.as_ref() else {
                            return Err(io::Error::other("listener gone"));
                        };
                        let (s, peer) = l.accept().await?;
                        tracing::info!(%peer, "reader connected");
                        s.set_nodelay(true)?;
                        Ok(Box::new(s) as BoxedIo)
                    }
                }
            };
            let bound = match addr {
                DeviceAddr::TcpListen { .. } => ACCEPT_TIMEOUT,
                _ => OPEN_TIMEOUT,
            };
            match tokio::time::timeout(bound, open).await {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "open timed out")),
            }
        })
    }

    fn describe(&self) -> String {
        self.addr.to_string()
    }
}

/// Opens a serial port (must be called inside a tokio runtime: the port registers with it).
fn open_serial(path: &str, line: &LineSettings) -> io::Result<BoxedIo> {
    use tokio_serial::SerialPortBuilderExt;
    let data_bits = match line.data_bits {
        5 => tokio_serial::DataBits::Five,
        6 => tokio_serial::DataBits::Six,
        7 => tokio_serial::DataBits::Seven,
        _ => tokio_serial::DataBits::Eight,
    };
    let stop_bits = match line.stop_bits {
        2 => tokio_serial::StopBits::Two,
        _ => tokio_serial::StopBits::One,
    };
    let parity = match line.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    let flow = match line.flow_control {
        FlowControl::None => tokio_serial::FlowControl::None,
        FlowControl::RtsCts => tokio_serial::FlowControl::Hardware,
    };
    let port = tokio_serial::new(path, line.baud)
        .data_bits(data_bits)
        .stop_bits(stop_bits)
        .parity(parity)
        .flow_control(flow)
        .open_native_async()
        .map_err(io::Error::from)?;
    Ok(Box::new(port))
}

/// A [`Connector`] from a closure, e.g. handing out in-process duplex streams in tests.
pub struct FnConnector<F> {
    f: F,
    name: String,
}

impl<F> FnConnector<F>
where
    F: FnMut() -> ConnectFuture + Send + 'static,
{
    /// Wraps `f`, described as `name` in logs.
    pub fn new(name: impl Into<String>, f: F) -> Self {
        FnConnector {
            f,
            name: name.into(),
        }
    }
}

impl<F> Connector for FnConnector<F>
where
    F: FnMut() -> ConnectFuture + Send + 'static,
{
    fn connect(&mut self) -> ConnectFuture {
        (self.f)()
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        assert_eq!(
            "/dev/ttyUSB0".parse(),
            Ok(DeviceAddr::Serial("/dev/ttyUSB0".into()))
        );
        assert_eq!(
            "serial:///dev/ttyACM0".parse(),
            Ok(DeviceAddr::Serial("/dev/ttyACM0".into()))
        );
        assert_eq!(
            " tcp://127.0.0.1:9100 ".parse(),
            Ok(DeviceAddr::Tcp {
                host: "127.0.0.1".into(),
                port: 9100
            })
        );
        assert_eq!(
            "tcp://[::1]:16107/".parse(),
            Ok(DeviceAddr::Tcp {
                host: "::1".into(),
                port: 16107
            })
        );
        assert_eq!("".parse::<DeviceAddr>(), Err(AddrError::Empty));
        assert_eq!(
            "tcp://:80".parse::<DeviceAddr>(),
            Err(AddrError::MissingPort)
        );
        assert_eq!(
            "tcp://h:0".parse::<DeviceAddr>(),
            Err(AddrError::BadPort("0".into()))
        );
        assert_eq!(
            "tcp://h:99999".parse::<DeviceAddr>(),
            Err(AddrError::BadPort("99999".into()))
        );
        assert_eq!(
            "udp://h:1".parse::<DeviceAddr>(),
            Err(AddrError::UnknownScheme("udp".into()))
        );
    }

    #[test]
    fn display_round_trips() {
        for s in ["/dev/pts/7", "tcp://reader.local:9100", "tcp://[::1]:80"] {
            let a: DeviceAddr = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
            assert_eq!(a.to_string().parse::<DeviceAddr>().unwrap(), a);
        }
    }

    #[test]
    fn default_line_is_57600_8n1_rts_cts() {
        let l = LineSettings::default();
        assert_eq!(
            (l.baud, l.data_bits, l.parity, l.stop_bits, l.flow_control),
            (57_600, 8, Parity::None, 1, FlowControl::RtsCts)
        );
        let c = AddrConnector::new("/dev/ttyS0?flow=none".parse().unwrap(), l);
        assert_eq!(c.line.flow_control, FlowControl::None);
        assert_eq!(
            DeviceAddr::serial_parts("/dev/ttyS0?flow=none"),
            ("/dev/ttyS0", Some(FlowControl::None))
        );
    }

    #[test]
    fn tcp_port_defaults_to_16107_and_tls_and_listen_parse() {
        let tcp = |host: &str, port| DeviceAddr::Tcp {
            host: host.into(),
            port,
        };
        assert_eq!("tcp://reader".parse(), Ok(tcp("reader", 16107)));
        assert_eq!("tcp://[fe80::1]".parse(), Ok(tcp("fe80::1", 16107)));
        assert_eq!("tcp://[fe80::1]:9".parse(), Ok(tcp("fe80::1", 9)));
        assert_eq!(
            "tcp-listen://0.0.0.0".parse(),
            Ok(DeviceAddr::TcpListen {
                host: "0.0.0.0".into(),
                port: 16107
            })
        );
        assert_eq!(
            "tls://reader.local?ca=/etc/emvbridge/reader.pem".parse(),
            Ok(DeviceAddr::Tls {
                host: "reader.local".into(),
                port: 16107,
                ca: "/etc/emvbridge/reader.pem".into(),
                client: None,
            })
        );
        assert_eq!(
            "tls://r?ca=/ca.pem&cert=/c.pem&key=/k.pem".parse(),
            Ok(DeviceAddr::Tls {
                host: "r".into(),
                port: 16107,
                ca: "/ca.pem".into(),
                client: Some(ClientCert {
                    cert: "/c.pem".into(),
                    key: "/k.pem".into()
                }),
            })
        );
        for half in [
            "tls://r?ca=/ca.pem&cert=/c.pem",
            "tls://r?ca=/ca.pem&key=/k.pem",
        ] {
            assert_eq!(
                half.parse::<DeviceAddr>(),
                Err(AddrError::HalfClientCert),
                "{half}"
            );
        }
        assert_eq!(
            "tls://reader:1".parse::<DeviceAddr>(),
            Err(AddrError::MissingCa)
        );
        assert_eq!(
            "tcp://h?x=1".parse::<DeviceAddr>(),
            Err(AddrError::BadOption("x".into()))
        );
        assert_eq!(
            "/dev/ttyS0?flow=maybe".parse::<DeviceAddr>(),
            Err(AddrError::BadOption("flow=maybe".into()))
        );
        for s in [
            "tls://r:5?ca=/x.pem",
            "tls://r:5?ca=/x.pem&cert=/c.pem&key=/k.pem",
            "tcp-listen://0.0.0.0:16107",
            "/dev/ttyS0?flow=none",
        ] {
            assert_eq!(s.parse::<DeviceAddr>().unwrap().to_string(), s);
        }
    }

    #[tokio::test]
    async fn listen_mode_accepts_the_reader_connecting_out() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let mut c = AddrConnector::new(
            DeviceAddr::TcpListen {
                host: "127.0.0.1".into(),
                port,
            },
            LineSettings::default(),
        );
        let accept = tokio::spawn(async move { c.connect().await.map(drop) });
        let mut reader = None;
        for _ in 0..100 {
            if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                reader = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(reader.is_some(), "the bridge listens");
        accept
            .await
            .unwrap()
            .expect("the connection is the transport");
    }

    #[tokio::test]
    async fn open_errors_are_io_errors() {
        let mut c = AddrConnector::new(
            DeviceAddr::Serial("/dev/does-not-exist-emvbridge".into()),
            LineSettings::default(),
        );
        assert!(c.connect().await.is_err());
        // A closed local port: connection refused, quickly.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let mut c = AddrConnector::new(
            DeviceAddr::Tcp {
                host: "127.0.0.1".into(),
                port,
            },
            LineSettings::default(),
        );
        let e = c.connect().await.err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(c.describe(), format!("tcp://127.0.0.1:{port}"));
    }
}

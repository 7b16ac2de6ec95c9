//! Where the reader is and how to open it: [`DeviceAddr`] (a serial path or `tcp://HOST:PORT`),
//! [`LineSettings`] for serial lines, and [`Connector`], the one seam the link uses to (re)open
//! its byte stream, so tests can plug in an in-process transport.
//!
//! VIPA uses the same frames over serial and TCP, with no extra length prefix
//! (vipa-protocol.md §1.4), so both are just an async byte stream here.

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

/// A reader address, parsed from the CLI: `tcp://HOST:PORT`, or a serial device path
/// (`/dev/ttyUSB0`, `/dev/ttyACM0`, a pty such as `/dev/pts/3`; `serial://PATH` also works).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeviceAddr {
    /// A serial port (RS-232 adapter, USB CDC-ACM or a pty).
    Serial(String),
    /// A TCP server on the terminal (§1.4: the terminal is the server [C, one source]).
    Tcp {
        /// Host name or IP literal (IPv6 without brackets).
        host: String,
        /// Port (\[GAP\]: no default is known, so it is required).
        port: u16,
    },
}

/// Why a device address does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// Nothing given.
    #[error("empty device address")]
    Empty,
    /// `tcp://` without `HOST:PORT`.
    #[error("tcp address needs host:port")]
    MissingPort,
    /// A port that is not 1..=65535.
    #[error("bad tcp port {0:?}")]
    BadPort(String),
    /// A scheme other than `tcp://` / `serial://`.
    #[error("unknown address scheme {0:?} (use tcp://host:port or a device path)")]
    UnknownScheme(String),
}

impl FromStr for DeviceAddr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, AddrError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(AddrError::Empty);
        }
        if let Some(rest) = s.strip_prefix("tcp://") {
            let rest = rest.trim_end_matches('/');
            let (host, port) = rest.rsplit_once(':').ok_or(AddrError::MissingPort)?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(AddrError::MissingPort);
            }
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| AddrError::BadPort(port.to_owned()))?;
            return Ok(DeviceAddr::Tcp {
                host: host.to_owned(),
                port,
            });
        }
        if let Some(path) = s.strip_prefix("serial://") {
            if path.is_empty() {
                return Err(AddrError::Empty);
            }
            return Ok(DeviceAddr::Serial(path.to_owned()));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(AddrError::UnknownScheme(scheme.to_owned()));
        }
        Ok(DeviceAddr::Serial(s.to_owned()))
    }
}

impl fmt::Display for DeviceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceAddr::Serial(p) => f.write_str(p),
            DeviceAddr::Tcp { host, port } if host.contains(':') => {
                write!(f, "tcp://[{host}]:{port}")
            }
            DeviceAddr::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
        }
    }
}

/// Hardware flow control on a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlowControl {
    /// None (default: what most hosts and USB CDC readers use).
    #[default]
    None,
    /// RTS/CTS: the \[S2\] host default (§1.3); needs a cable that wires it.
    RtsCts,
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

/// Serial line settings. Default 57600 8N1 without flow control (§1.3: the \[S2\] default speed;
/// its RTS/CTS is opt-in here because an older version of the same host and most cables do
/// without). Ignored for TCP; USB CDC-ACM devices ignore them as well \[I\].
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
            flow_control: FlowControl::None,
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
/// libudev) or a TCP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrConnector {
    /// Where.
    pub addr: DeviceAddr,
    /// Line settings (serial only).
    pub line: LineSettings,
}

impl AddrConnector {
    /// A connector for `addr` with `line` settings.
    pub fn new(addr: DeviceAddr, line: LineSettings) -> Self {
        AddrConnector { addr, line }
    }
}

impl Connector for AddrConnector {
    fn connect(&mut self) -> ConnectFuture {
        let addr = self.addr.clone();
        let line = self.line;
        Box::pin(async move {
            let open = async {
                match &addr {
                    DeviceAddr::Serial(path) => open_serial(path, &line),
                    DeviceAddr::Tcp { host, port } => {
                        let s = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                        // Frames are small and latency matters more than batching.
                        s.set_nodelay(true)?;
                        Ok(Box::new(s) as BoxedIo)
                    }
                }
            };
            match tokio::time::timeout(OPEN_TIMEOUT, open).await {
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
            "tcp://reader".parse::<DeviceAddr>(),
            Err(AddrError::MissingPort)
        );
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
    fn default_line_is_57600_8n1_no_flow_control() {
        let l = LineSettings::default();
        assert_eq!(
            (l.baud, l.data_bits, l.parity, l.stop_bits, l.flow_control),
            (57_600, 8, Parity::None, 1, FlowControl::None)
        );
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

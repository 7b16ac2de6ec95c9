//! The embedded simulated reader, steered from the POS side so a till's test suite can script
//! the card per sale (as Stripe's simulated reader does with `testCardNumber`):
//! `PUT /v1/simulator/card` sets the card the reader presents by itself, `PUT
//! /v1/simulator/auto` what it does by itself, `POST /v1/simulator/{action}` (`insert`,
//! `tap`, `swipe`, `remove`, `pin`, `cancel`) acts now, `GET /v1/simulator` reports its state.
//! Each is one command of the simulator's control channel. With a real reader (or a till build
//! without the simulator) the routes answer `404 no_simulator`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::bodies::parse_body;
use super::error::ApiError;
use super::state::AppState;

/// `PUT /v1/simulator/card`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CardBody {
    profile: String,
}

/// `PUT /v1/simulator/auto`: what the reader does by itself (absent: unchanged).
#[cfg_attr(not(feature = "sim"), allow(dead_code))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AutoBody {
    #[serde(default)]
    insert: Option<bool>,
    #[serde(default)]
    remove: Option<bool>,
    #[serde(default)]
    pin: Option<bool>,
}

/// `insert`, `tap`, `swipe`: the card (default: the current one); `tap` in mag-stripe mode.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresentBody {
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    msd: bool,
}

/// `pin`: digits, or bypass. No `Debug`: the digits are a PIN, even a simulated one.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinBody {
    #[serde(default)]
    digits: Option<String>,
    #[serde(default)]
    bypass: bool,
}

/// A body that may be left out.
fn optional<T: Default + serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_body(body)
    }
}

/// The control command for `action` and its body, or `404`/`400`.
#[cfg_attr(not(feature = "sim"), allow(dead_code))]
fn action_command(action: &str, body: &[u8]) -> Result<Command, ApiError> {
    Ok(match action {
        "insert" => {
            let b: PresentBody = optional(body)?;
            Command::Insert(b.profile)
        }
        "tap" => {
            let b: PresentBody = optional(body)?;
            Command::Tap(b.profile, b.msd)
        }
        "swipe" => {
            let b: PresentBody = optional(body)?;
            Command::Swipe(b.profile)
        }
        "remove" => {
            optional::<Empty>(body)?;
            Command::Remove
        }
        "pin" => {
            let b: PinBody = optional(body)?;
            Command::Pin(b.digits, b.bypass)
        }
        "cancel" => {
            optional::<Empty>(body)?;
            Command::Cancel
        }
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_action",
                format!(
                    "{} is not a simulator action (insert, tap, swipe, remove, pin, cancel)",
                    super::error::clip(other, 32)
                ),
            ))
        }
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// One command of the control channel, independent of whether the simulator is linked in.
#[cfg_attr(not(feature = "sim"), allow(dead_code))]
enum Command {
    Card(String),
    Auto(AutoBody),
    Insert(Option<String>),
    Tap(Option<String>, bool),
    Swipe(Option<String>),
    Remove,
    Pin(Option<String>, bool),
    /// The cancel key at the PIN prompt.
    Cancel,
    Status,
}

fn no_simulator() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_simulator",
        "the reader is not the embedded simulator",
    )
}

#[cfg(feature = "sim")]
async fn run(s: &AppState, cmd: Command) -> Result<Response, ApiError> {
    use emvbridge_sim::scenario::Control;
    use emvbridge_sim::transport::HandleError;
    let Some(sim) = s.simulator.as_ref() else {
        return Err(no_simulator());
    };
    let control = match cmd {
        Command::Card(profile) => Control::Card { profile },
        Command::Auto(a) => Control::Auto {
            insert: a.insert,
            remove: a.remove,
            pin: a.pin,
        },
        Command::Insert(profile) => Control::Insert { profile },
        Command::Tap(profile, msd) => Control::Tap { profile, msd },
        Command::Swipe(profile) => Control::Swipe { profile },
        Command::Remove => Control::Remove,
        Command::Pin(digits, bypass) => Control::Pin {
            digits,
            cancel: false,
            bypass,
        },
        Command::Cancel => Control::Pin {
            digits: None,
            cancel: true,
            bypass: false,
        },
        Command::Status => Control::Status,
    };
    let is_card = matches!(control, Control::Card { .. });
    let mut result = sim.control(control).await;
    // A card left in the slot from before would be read by the next sale: between sales, the
    // new card replaces it (during one, the running transaction keeps its card).
    if let Ok(st) = &result {
        if is_card
            && st
                .card_present
                .as_deref()
                .is_some_and(|p| Some(p) != st.card.as_deref())
            && s.running_id().is_none()
        {
            result = sim.control(Control::Remove).await;
        }
    }
    match result {
        Ok(status) => Ok(axum::response::IntoResponse::into_response(axum::Json(
            status,
        ))),
        Err(HandleError::Refused(e)) => {
            tracing::debug!(error = %e, "simulator refused a control command");
            Err(ApiError::unprocessable("simulator_refused", e.to_string()))
        }
        Err(e) => {
            tracing::error!(error = %e, "simulator control channel failed");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "simulator_unavailable",
                e.to_string(),
            ))
        }
    }
}

#[cfg(not(feature = "sim"))]
async fn run(_s: &AppState, _cmd: Command) -> Result<Response, ApiError> {
    Err(no_simulator())
}

/// `GET /v1/simulator`: the simulated reader's state.
pub(super) async fn status(State(s): State<AppState>) -> Result<Response, ApiError> {
    run(&s, Command::Status).await
}

/// `PUT /v1/simulator/card`: the card the reader presents by itself from now on (between
/// sales, a different card still in the slot is pulled so the next sale reads the new one).
pub(super) async fn card(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let b: CardBody = parse_body(&body)?;
    run(&s, Command::Card(b.profile)).await
}

/// `PUT /v1/simulator/auto`: whether the reader presents, removes and enters the PIN by itself.
pub(super) async fn auto(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let b: AutoBody = parse_body(&body)?;
    run(&s, Command::Auto(b)).await
}

/// `POST /v1/simulator/{action}`.
pub(super) async fn action(
    State(s): State<AppState>,
    Path(action): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !s.has_simulator() {
        return Err(no_simulator());
    }
    let cmd = action_command(&action, &body)?;
    run(&s, cmd).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_their_bodies() {
        assert!(matches!(
            action_command("insert", b""),
            Ok(Command::Insert(None))
        ));
        assert!(matches!(
            action_command("tap", br#"{"profile":"mc-contactless","msd":true}"#),
            Ok(Command::Tap(Some(p), true)) if p == "mc-contactless"
        ));
        assert!(matches!(
            action_command("pin", br#"{"digits":"1234"}"#),
            Ok(Command::Pin(Some(d), false)) if d == "1234"
        ));
        assert!(matches!(
            action_command("cancel", b" "),
            Ok(Command::Cancel)
        ));
        assert_eq!(
            action_command("remove", br#"{"x":1}"#)
                .err()
                .map(|e| e.code),
            Some("invalid_body")
        );
        assert_eq!(
            action_command("shake", b"").err().map(|e| e.code),
            Some("no_such_action")
        );
    }
}

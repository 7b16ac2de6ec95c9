//! Control commands (the `vipa-sim` standard-input channel) and scenarios (scripted
//! sequences of the same commands).
//!
//! One JSON object per line, `cmd` naming the command:
//!
//! | line | effect |
//! |---|---|
//! | `{"cmd":"card","profile":"visa-cvn18"}` | the card used by auto-insert from now on; inserted at once if a Start Transaction is waiting for a card |
//! | `{"cmd":"insert","profile":"two-app"}` | insert a chip card now (`profile` optional: the current card) |
//! | `{"cmd":"tap","profile":"visa-cvn18","msd":false}` | tap a contactless card (`msd`: answer with `E7` mag-stripe data) |
//! | `{"cmd":"swipe","profile":"visa-cvn18"}` | swipe the card's magnetic stripe |
//! | `{"cmd":"remove"}` | pull the card |
//! | `{"cmd":"pin","digits":"1234"}` | PIN for the current or next prompt |
//! | `{"cmd":"pin","cancel":true}` / `{"cmd":"pin","bypass":true}` | cancel key / PIN bypass |
//! | `{"cmd":"reboot"}` | power-cycle the device |
//! | `{"cmd":"faults","spec":"corrupt-lrc=0.1"}` | replace the fault plan (see [`crate::faults`]) |
//! | `{"cmd":"auto","insert":true,"remove":true,"pin":true}` | switch automatic behaviour (fields optional) |
//! | `{"cmd":"status"}` | no effect; the acknowledgement carries the state |
//!
//! Scenarios (`--scenario FILE`) add two commands that only make sense in a script:
//! `{"cmd":"wait","ms":500}` and `{"cmd":"wait-for","point":"e4"}` (a flow point as in
//! [`crate::faults::Point`]: start, pin, e2, e4, final, continue). Blank lines and lines
//! starting with `#` are ignored.

use core::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::faults::Point;

/// Longest scenario accepted (steps).
pub const MAX_SCENARIO_STEPS: usize = 10_000;

/// The PIN part of a `pin` command.
#[derive(Clone, PartialEq, Eq)]
pub enum PinAction {
    /// Digits typed (masked in `Debug`).
    Digits(String),
    /// Cancel key.
    Cancel,
    /// PIN bypass.
    Bypass,
}

impl fmt::Debug for PinAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinAction::Digits(d) => write!(f, "Digits({} digits)", d.len()),
            PinAction::Cancel => f.write_str("Cancel"),
            PinAction::Bypass => f.write_str("Bypass"),
        }
    }
}

/// A control command.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Control {
    /// Set the auto-insert card.
    Card {
        /// Profile name.
        profile: String,
    },
    /// Insert a chip card.
    Insert {
        /// Profile name (default: the current card).
        #[serde(default)]
        profile: Option<String>,
    },
    /// Tap a contactless card.
    Tap {
        /// Profile name (default: the current card).
        #[serde(default)]
        profile: Option<String>,
        /// Mag-stripe mode (`E7`).
        #[serde(default)]
        msd: bool,
    },
    /// Swipe a card.
    Swipe {
        /// Profile name (default: the current card).
        #[serde(default)]
        profile: Option<String>,
    },
    /// Pull the card.
    Remove,
    /// PIN entry.
    Pin {
        /// Digits.
        #[serde(default)]
        digits: Option<String>,
        /// Cancel key.
        #[serde(default)]
        cancel: bool,
        /// Bypass.
        #[serde(default)]
        bypass: bool,
    },
    /// Power-cycle.
    Reboot,
    /// New fault plan.
    Faults {
        /// `--faults` syntax.
        spec: String,
    },
    /// Automatic behaviour.
    Auto {
        /// Present the card by itself once the reader is armed.
        #[serde(default)]
        insert: Option<bool>,
        /// Auto-remove after `E3`/`E5`.
        #[serde(default)]
        remove: Option<bool>,
        /// Auto PIN entry with the profile's PIN.
        #[serde(default)]
        pin: Option<bool>,
    },
    /// How the card is presented by itself once the reader is armed: `insert`, `tap`,
    /// `tap-msd` or `swipe`.
    Present {
        /// The presentation.
        how: String,
    },
    /// Behave like this logged reader from now on: `generic`, `ux300`, `ux301`, `m400`,
    /// `p400` (its Reset answer; the M400 answers Card Status unsolicited only).
    Device {
        /// The model.
        model: String,
    },
    /// Report the state.
    Status,
    /// Scenario only: wait.
    Wait {
        /// Milliseconds.
        ms: u64,
    },
    /// Scenario only: wait for a flow point.
    WaitFor {
        /// Point name.
        point: String,
    },
}

impl fmt::Debug for Control {
    /// PIN digits are never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Control::Pin {
                digits,
                cancel,
                bypass,
            } => f
                .debug_struct("Pin")
                .field("digits", &digits.as_ref().map(|d| "*".repeat(d.len())))
                .field("cancel", cancel)
                .field("bypass", bypass)
                .finish(),
            Control::Card { profile } => write!(f, "Card({profile})"),
            Control::Insert { profile } => write!(f, "Insert({profile:?})"),
            Control::Tap { profile, msd } => write!(f, "Tap({profile:?}, msd={msd})"),
            Control::Swipe { profile } => write!(f, "Swipe({profile:?})"),
            Control::Remove => f.write_str("Remove"),
            Control::Reboot => f.write_str("Reboot"),
            Control::Faults { spec } => write!(f, "Faults({spec})"),
            Control::Auto {
                insert,
                remove,
                pin,
            } => {
                write!(f, "Auto(insert={insert:?}, remove={remove:?}, pin={pin:?})")
            }
            Control::Present { how } => write!(f, "Present({how})"),
            Control::Device { model } => write!(f, "Device({model})"),
            Control::Status => f.write_str("Status"),
            Control::Wait { ms } => write!(f, "Wait({ms}ms)"),
            Control::WaitFor { point } => write!(f, "WaitFor({point})"),
        }
    }
}

impl Control {
    /// Parses one JSON line.
    ///
    /// # Errors
    /// [`ScenarioError::Syntax`] for bad JSON or an unknown command.
    pub fn parse_line(line: &str) -> Result<Control, ScenarioError> {
        serde_json::from_str(line).map_err(|_| ScenarioError::Syntax { line: 1 })
    }

    /// The `cmd` name, for acknowledgements.
    pub fn name(&self) -> &'static str {
        match self {
            Control::Card { .. } => "card",
            Control::Insert { .. } => "insert",
            Control::Tap { .. } => "tap",
            Control::Swipe { .. } => "swipe",
            Control::Remove => "remove",
            Control::Pin { .. } => "pin",
            Control::Reboot => "reboot",
            Control::Faults { .. } => "faults",
            Control::Auto { .. } => "auto",
            Control::Present { .. } => "present",
            Control::Device { .. } => "device",
            Control::Status => "status",
            Control::Wait { .. } => "wait",
            Control::WaitFor { .. } => "wait-for",
        }
    }

    /// The PIN action of a `pin` command.
    pub fn pin_action(digits: Option<&str>, cancel: bool, bypass: bool) -> Option<PinAction> {
        match (digits, cancel, bypass) {
            (_, true, _) => Some(PinAction::Cancel),
            (_, _, true) => Some(PinAction::Bypass),
            (Some(d), _, _)
                if (4..=12).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Some(PinAction::Digits(d.to_owned()))
            }
            _ => None,
        }
    }
}

/// A scenario step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Apply a control command.
    Do(Control),
    /// Wait this long.
    Wait(Duration),
    /// Wait until the flow reaches this point.
    WaitFor(Point),
}

/// Why a scenario was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    /// A line is not a known command.
    #[error("scenario line {line}: not a command")]
    Syntax {
        /// 1-based line number.
        line: usize,
    },
    /// A `wait-for` names an unknown point.
    #[error("scenario line {line}: unknown point")]
    BadPoint {
        /// 1-based line number.
        line: usize,
    },
    /// More than [`MAX_SCENARIO_STEPS`] steps.
    #[error("scenario too long")]
    TooLong,
}

/// A parsed scenario.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scenario {
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl Scenario {
    /// Parses JSON lines.
    ///
    /// # Errors
    /// [`ScenarioError`] naming the first bad line.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let mut steps = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if steps.len() >= MAX_SCENARIO_STEPS {
                return Err(ScenarioError::TooLong);
            }
            let c: Control =
                serde_json::from_str(line).map_err(|_| ScenarioError::Syntax { line: i + 1 })?;
            steps.push(match c {
                Control::Wait { ms } => Step::Wait(Duration::from_millis(ms)),
                Control::WaitFor { point } => Step::WaitFor(
                    point
                        .parse()
                        .map_err(|_| ScenarioError::BadPoint { line: i + 1 })?,
                ),
                other => Step::Do(other),
            });
        }
        Ok(Scenario { steps })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_scenario() {
        let s = Scenario::parse(
            "# a sale with a PIN cancel\n{\"cmd\":\"insert\",\"profile\":\"offline-pin\"}\n\n{\"cmd\":\"wait-for\",\"point\":\"pin\"}\n{\"cmd\":\"wait\",\"ms\":250}\n{\"cmd\":\"pin\",\"cancel\":true}\n{\"cmd\":\"remove\"}\n",
        )
        .unwrap();
        assert_eq!(
            s.steps,
            vec![
                Step::Do(Control::Insert {
                    profile: Some("offline-pin".into())
                }),
                Step::WaitFor(Point::Pin),
                Step::Wait(Duration::from_millis(250)),
                Step::Do(Control::Pin {
                    digits: None,
                    cancel: true,
                    bypass: false
                }),
                Step::Do(Control::Remove),
            ]
        );
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(
            Scenario::parse("{\"cmd\":\"remove\"}\n{\"cmd\":\"fly\"}"),
            Err(ScenarioError::Syntax { line: 2 })
        );
        assert_eq!(
            Scenario::parse("{\"cmd\":\"wait-for\",\"point\":\"e9\"}"),
            Err(ScenarioError::BadPoint { line: 1 })
        );
    }

    #[test]
    fn pin_debug_is_masked() {
        let c = Control::parse_line(r#"{"cmd":"pin","digits":"4321"}"#).unwrap();
        let s = format!("{c:?}");
        assert!(!s.contains("4321"), "{s}");
        assert_eq!(
            Control::pin_action(Some("4321"), false, false),
            Some(PinAction::Digits("4321".into()))
        );
        assert_eq!(Control::pin_action(Some("12"), false, false), None);
    }
}
